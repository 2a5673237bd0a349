"""Gold figures on the job page, the items page (filters, pages, typed gold, CSV), comparing
versions and a policy's settings, in a real browser."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from labeling.gold import items as items_module
from labeling.models import GoldLabel, GoldSource, Item, SampleSet
from policies.models import PolicySettingChange
from tests.labeling.gold.test_gold import build_job
from tests.labeling.review.test_review import make_policy, make_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = '=cmd|" /C calc"!A0 <script>window.__pwned = 1</script>'

# expected label at import, label under A, label under B
ROWS = [
    (1, 1, 1),
    (1, 0, 1),
    (0, 1, 0),
    (0, 0, 0),
    (None, 1, 0),
    (0, 1, 1),
    (1, 1, 1),
]


def test_gold_figures_and_items_page(
    page: Any,
    live_server: Any,
    login: Any,
    screenshot: Any,
    author: Any,
    reviewer: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(items_module, "PAGE_SIZE", 3)
    job = build_job(author, ROWS)
    Item.objects.filter(sample_set=job.sample_set, row_number=2).update(text=HOSTILE)
    login(reviewer)

    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/")
    # A: tp 2, fn 1, fp 2, tn 1 → F1 4/7; B: tp 3, fp 1, tn 2 → F1 6/7.
    assert page.locator("#gold-f1-a").inner_text() == "0.571"
    assert page.locator("#gold-f1-b").inner_text() == "0.857"
    assert page.locator("#gold-precision-a").inner_text() == "0.500"
    assert page.locator(".few-gold").first.is_visible()
    page.locator("#misses-a-fp summary").click()
    assert HOSTILE in page.locator("#misses-a-fp").inner_text()
    assert page.evaluate("window.__pwned") is None
    screenshot("job-gold")

    ids = sorted(Item.objects.filter(sample_set=job.sample_set).values_list("pk", flat=True))
    page.click("text=Per-item results")
    page.wait_for_selector(f"#item-{ids[0]}")
    assert page.locator("#items-table tbody tr").count() == 3
    page.evaluate("window.__marker = 1")
    page.click("#next-page")
    page.wait_for_selector(f"#item-{ids[3]}")
    assert page.locator("#items-table tbody tr").count() == 3
    assert page.evaluate("window.__marker") == 1  # htmx swap, no page load
    page.click("#next-page")
    page.wait_for_selector(f"#item-{ids[6]}")
    assert page.locator("#items-table tbody tr").count() == 1
    assert page.locator("#next-page").count() == 0
    page.click("#prev-page")
    page.wait_for_selector(f"#item-{ids[3]}")
    assert page.locator("#items-table tbody tr").count() == 3

    # Filter: A's false positives (gold 0, A said 1): rows 2 and 5.
    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/items/")
    page.select_option("#id_wrong", "a_fp")
    page.click(".item-filters button[type=submit]")
    expect(page.locator("#items-table tbody tr")).to_have_count(2)
    texts = page.locator("#items-table tbody td.content-text").all_inner_texts()
    assert texts == [HOSTILE, "content 5"]
    assert page.evaluate("window.__pwned") is None
    screenshot("job-items-filtered")

    # Type a gold label on the second row: A's false positive becomes a true positive.
    row_item = Item.objects.get(sample_set=job.sample_set, row_number=5)
    cell = page.locator(f"#gold-{row_item.pk}")
    cell.locator("select").select_option("1")
    cell.locator("button").click()
    expect(cell).to_contain_text("typed")
    gold = GoldLabel.objects.get(item=row_item, policy=job.version.policy)
    assert (gold.label, gold.source, gold.decided_by_id) == ("1", GoldSource.TYPED, reviewer.pk)

    # The CSV follows the filter and guards formula cells.
    with page.expect_download() as info:
        page.click("#csv-link")
    body = Path(info.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["text"] for r in rows] == ["'" + HOSTILE]  # the typed gold took row 5 out

    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/")
    assert page.locator("#gold-f1-a").inner_text() == "0.750"  # tp 3, fn 1, fp 1 → 6/8


def test_compare_versions_view(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any
) -> None:
    policy = make_policy(author, min_sample_size=3)
    v1, v2 = make_version(policy, author), make_version(policy, author)
    first = build_job(author, [(1, 0, 0), (1, 1, 1), (0, 1, 1), (0, 0, 0)], version=v1)
    second = build_job(author, [(1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0)], version=v2)
    # Same items: the second job labels the first job's sample set.
    from labeling.models import Job, Label

    Label.objects.filter(job=second).delete()
    Job.objects.filter(pk=second.pk).update(sample_set=first.sample_set)
    for item, label in zip(
        Item.objects.filter(sample_set=first.sample_set).order_by("row_number"),
        [1, 1, 0, 0],
        strict=True,
    ):
        for side in "AB":
            Label.objects.create(job=second, item=item, side=side, label=label, p1=0.9 * label)
    login(author)

    page.goto(f"{live_server.url}/labeling/policies/{policy.pk}/compare/")
    page.select_option("#cmp-a", str(v1.pk))
    page.select_option("#cmp-b", str(v2.pk))
    page.click(".compare-form button")
    assert page.locator("#common-items").inner_text() == "4"
    assert page.locator("#f1-left").inner_text() == "0.500"
    assert page.locator("#f1-right").inner_text() == "1.000"
    assert "content 2" in page.locator("#flips-left").inner_text()
    assert "content 0" in page.locator("#flips-right").inner_text()
    screenshot("compare-versions")


def test_admin_changes_settings_and_sees_the_audit(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, admin_user: Any
) -> None:
    policy = make_policy(author, agreement_threshold=0.95, min_sample_size=200)
    evaluation = SampleSet.objects.create(name="Gold set", item_count=5, created_by=author)
    login(admin_user)

    page.goto(f"{live_server.url}/labeling/policies/{policy.pk}/settings/")
    page.evaluate("window.__marker = 1")
    # The server's check, not only the browser's min/max attributes.
    page.evaluate("document.querySelector('#id_agreement_threshold').removeAttribute('min')")
    page.fill("#id_agreement_threshold", "40")
    page.click(".settings-form button[type=submit]")
    page.wait_for_selector("#policy-settings .error")
    assert "greater than or equal to 50" in page.locator("#policy-settings .error").inner_text()

    page.fill("#id_agreement_threshold", "90")
    page.fill("#id_min_sample_size", "120")
    page.select_option("#id_evaluation_set", str(evaluation.pk))
    page.click(".settings-form button[type=submit]")
    page.wait_for_selector("#confirm-lowering")  # 95% -> 90% lowers the gate: confirm it
    page.check("#id_confirm")
    page.click(".settings-form button[type=submit]")
    page.wait_for_selector("#settings-audit")
    assert page.evaluate("window.__marker") == 1
    audit = page.locator("#settings-audit").inner_text()
    assert admin_user.username in audit and "95%" in audit and "90%" in audit
    assert "Gold set" in audit and "120" in audit
    assert page.locator("#current-min-sample").inner_text() == "120"
    assert PolicySettingChange.objects.filter(policy=policy).count() == 3
    screenshot("policy-settings")


def test_items_count_csv_name_and_gold_history_per_item(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, reviewer: Any
) -> None:
    job = build_job(author, ROWS)
    SampleSet.objects.filter(pk=job.sample_set_id).update(name="Eval <i>set</i>")
    item = Item.objects.get(sample_set=job.sample_set, row_number=1)  # expected 1, A 0, B 1
    login(reviewer)

    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/items/")
    assert page.locator("#items-count").inner_text() == "7 items in this job."
    page.check("#id_mismatch")
    page.click(".item-filters button[type=submit]")
    expect(page.locator("#items-count")).to_contain_text("match these filters")
    assert page.locator("#items-count").inner_text() == "3 items match these filters."
    with page.expect_download() as info:
        page.click("#csv-link")
    assert info.value.suggested_filename == f"job-{job.pk}-items-mismatches.csv"

    # Type the gold of one row twice, then open its history: the import first, then each change.
    cell = page.locator(f"#gold-{item.pk}")
    for label in ("0", "u"):
        cell.locator("select").select_option(label)
        cell.locator("button").click()
        expect(cell.locator("strong")).to_have_text(label)
    page.evaluate("window.__marker = 1")
    cell.locator("details.gold-history summary").click()
    history = cell.locator(".gold-history-list li")
    history.last.wait_for()
    lines = history.all_inner_texts()
    assert len(lines) == 3
    assert "imported with expected label 1" in lines[0]
    assert "Eval <i>set</i>" in lines[0] and author.username in lines[0]
    assert "1 (import) → 0 (typed), by " + reviewer.username in lines[1]
    assert "0 (typed) → u (typed), by " + reviewer.username in lines[2]
    assert page.evaluate("window.__marker") == 1  # loaded in place
    screenshot("item-gold-history")

    # Out of range: a clear error, and the other filters still apply.
    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/items/?margin=0.9&mismatch=on")
    assert "from 0 to 0.5" in page.locator("#filter-errors").inner_text()
    assert page.locator("#items-count").inner_text() == "3 items match these filters."
