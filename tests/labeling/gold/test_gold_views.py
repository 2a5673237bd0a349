"""The items page, typed gold, the CSV, the job page's gold figures, comparing versions and a
policy's settings: plain requests, htmx requests and permissions."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.agreement import Confusion, agreement_from_confusion
from labeling.gold import items as items_module
from labeling.jobs.services import start_job
from labeling.models import (
    CompareKind,
    GoldLabel,
    GoldSource,
    Item,
    Job,
    PolicyEvaluation,
    SampleSet,
)
from policies.models import PolicySettingChange
from tests.conftest import PASSWORD
from tests.labeling.gold.test_gold import build_job
from tests.labeling.review.test_review import make_policy, make_version

HTMX = {"HTTP_HX_REQUEST": "true"}


def login(client: Client, user: Any) -> Client:
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def job(author: Any) -> Job:
    #        expected, A, B
    rows = [
        (1, 1, 1),
        (1, 0, 1),
        (0, 1, 0),
        (0, 0, 0),
        (None, 1, 0),
        (0, None, 0),
    ]
    return build_job(author, rows)


def items_url(job: Job, query: str = "") -> str:
    return reverse("labeling:job_items", args=[job.pk]) + (f"?{query}" if query else "")


def shown_ids(response: Any) -> list[int]:
    return [r["item_id"] for r in response.context["page"].rows]


def test_items_page_lists_both_labels_gold_and_escapes_content(
    client: Client, author: Any, job: Job
) -> None:
    Item.objects.filter(sample_set=job.sample_set, row_number=0).update(
        text="<script>alert(1)</script>"
    )
    response = login(client, author).get(items_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert len(shown_ids(response)) == 6
    first = response.context["page"].rows[0]
    assert (first["label"], first["label_b"], first["gold"], first["gold_source"]) == (
        1,
        1,
        "1",
        "import",
    )


@pytest.mark.parametrize(
    ("query", "rows"),
    [
        ("mismatch=on", [1, 2, 4]),
        ("wrong=a", [1, 2]),
        ("wrong=a_fp", [2]),
        ("wrong=b_fn", []),
        ("wrong=b", []),
        ("wrong=no_gold", [4]),
        ("said=only_a", [2, 4]),
        ("said=both", [0]),
        ("said=b", [0, 1]),
        ("margin=0.35", [0, 1, 2, 3, 4, 5]),  # p(1) 0.8/0.2: |p − 0.5| = 0.3
        ("margin=0.25", []),
    ],
)
def test_items_filters(client: Client, author: Any, job: Job, query: str, rows: list[int]) -> None:
    ids = list(
        Item.objects.filter(sample_set=job.sample_set)
        .order_by("row_number")
        .values_list("pk", flat=True)
    )
    response = login(client, author).get(items_url(job, query))

    assert response.status_code == 200
    assert shown_ids(response) == [ids[r] for r in rows]


def test_keyset_pages_walk_forward_and_back(
    client: Client, author: Any, job: Job, monkeypatch: Any
) -> None:
    monkeypatch.setattr(items_module, "PAGE_SIZE", 4)
    ids = sorted(Item.objects.filter(sample_set=job.sample_set).values_list("pk", flat=True))
    login(client, author)

    first = client.get(items_url(job))
    assert shown_ids(first) == ids[:4] and first.context["page"].is_first
    second = client.get(items_url(job, first.context["next_query"]))
    assert shown_ids(second) == ids[4:]
    assert second.context["next_query"] == ""
    back = client.get(items_url(job, second.context["prev_query"]))
    assert shown_ids(back) == ids[:4]
    # Filters travel with the cursor.
    filtered = client.get(items_url(job, "said=a"))
    assert "said=a" in filtered.context["filter_query"]


def test_items_page_htmx_returns_the_table_fragment(client: Client, author: Any, job: Job) -> None:
    response = login(client, author).get(items_url(job, "mismatch=on"), **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="items-table">')
    assert "<html" not in html


def test_outsider_gets_403_everywhere(client: Client, outsider: Any, job: Job) -> None:
    login(client, outsider)
    policy = job.version.policy
    for url in (
        items_url(job),
        reverse("labeling:job_items_csv", args=[job.pk]),
        reverse("labeling:version_compare", args=[policy.pk]),
        reverse("labeling:policy_settings", args=[policy.pk]),
    ):
        assert client.get(url).status_code == 403, url


def test_csv_streams_every_row_with_formula_guard(client: Client, author: Any, job: Job) -> None:
    Item.objects.filter(sample_set=job.sample_set, row_number=0).update(
        text='=HYPERLINK("http://evil")'
    )
    Item.objects.filter(sample_set=job.sample_set, row_number=1).update(text="+1 cmd")
    Item.objects.filter(sample_set=job.sample_set, row_number=2).update(text="\tTAB @x")
    response = login(client, author).get(reverse("labeling:job_items_csv", args=[job.pk]))

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 6
    assert rows[0]["text"] == '\'=HYPERLINK("http://evil")'
    assert rows[1]["text"] == "'+1 cmd"
    assert rows[2]["text"] == "'\tTAB @x"
    assert rows[3]["text"] == "content 3"
    assert rows[0]["gold_source"] == "import" and rows[5]["error_a"] == "too long"


def test_csv_follows_the_filters(client: Client, author: Any, job: Job) -> None:
    response = login(client, author).get(
        reverse("labeling:job_items_csv", args=[job.pk]) + "?wrong=a_fp"
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["text"] for r in rows] == ["content 2"]


def test_guard_cell() -> None:
    assert items_module.guard_cell("-2+3") == "'-2+3"
    assert items_module.guard_cell("@SUM(A1)") == "'@SUM(A1)"
    assert items_module.guard_cell("\rx") == "'\rx"
    assert items_module.guard_cell("fine = ok") == "fine = ok"
    assert items_module.guard_cell(None) == ""
    assert items_module.guard_cell(0.5) == "0.5"


def test_reviewer_types_gold_plain_and_htmx(client: Client, reviewer: Any, job: Job) -> None:
    item = Item.objects.get(sample_set=job.sample_set, row_number=4)
    url = reverse("labeling:job_gold_set", args=[job.pk])
    login(client, reviewer)

    response = client.post(url, {"item": item.pk, "label": "1", "back": "said=a"})
    assert response.status_code == 302 and response["Location"].endswith("?said=a")
    gold = GoldLabel.objects.get(item=item, policy=job.version.policy)
    assert (gold.label, gold.source, gold.decided_by) == ("1", GoldSource.TYPED, reviewer)

    response = client.post(url, {"item": item.pk, "label": "u"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<td class="gold-cell"') and "typed" in html
    assert GoldLabel.objects.get(item=item).label == "u"


def test_typed_gold_refuses_bad_input_and_other_jobs_items(
    client: Client, reviewer: Any, author: Any, job: Job
) -> None:
    other = build_job(author, [(1, 1, 1)])
    foreign = Item.objects.get(sample_set=other.sample_set)
    url = reverse("labeling:job_gold_set", args=[job.pk])
    login(client, reviewer)
    item = Item.objects.filter(sample_set=job.sample_set).first()

    assert client.post(url, {"item": item.pk, "label": "7"}).status_code == 400
    assert client.post(url, {"item": foreign.pk, "label": "1"}).status_code == 404
    assert not GoldLabel.objects.exists()


def test_author_cannot_type_gold(client: Client, author: Any, job: Job) -> None:
    item = Item.objects.filter(sample_set=job.sample_set).first()
    response = login(client, author).post(
        reverse("labeling:job_gold_set", args=[job.pk]), {"item": item.pk, "label": "1"}
    )
    assert response.status_code == 403
    assert "Set gold" not in login(client, author).get(items_url(job)).content.decode()


def test_job_page_shows_gold_figures_per_side(client: Client, author: Any, job: Job) -> None:
    response = login(client, author).get(reverse("labeling:job_detail", args=[job.pk]))

    html = response.content.decode()
    assert 'id="gold-scores"' in html
    # A: tp 1, fn 1, fp 1, tn 1 → F1 0.5; B: tp 2, tn 3 → F1 1.0 (one item A could not label).
    assert 'id="gold-f1-a">0.500<' in html
    assert 'id="gold-f1-b">1.000<' in html
    assert "fewer than 30" in html
    assert "1 item without gold" in html or "1 item</" in html or "without gold" in html
    assert 'id="misses-a-fp"' in html and "content 2" in html


def test_job_page_says_when_no_item_has_gold(client: Client, author: Any) -> None:
    job = build_job(author, [(None, 1, 1), (None, 0, 0)])
    html = login(client, author).get(reverse("labeling:job_detail", args=[job.pk])).content
    assert b'id="no-gold"' in html


# Comparisons ---------------------------------------------------------------------------------


def test_run_form_starts_a_comparison_with_another_version(
    client: Client, author: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("labeling.jobs.broker.send_score_request", lambda request: None)
    policy = make_policy(author)
    v1 = make_version(policy, author, text="# Old\n\n## Overview\nOld wording.\n")
    v2 = make_version(policy, author)
    sample_set = SampleSet.objects.create(name="s", item_count=1, created_by=author)
    Item.objects.create(
        sample_set=sample_set, external_id="x", text="t", content_hash="h", row_number=1
    )
    url = reverse("labeling:job_start", args=[v2.pk])
    login(client, author)

    response = client.post(
        url, {"sample_set": sample_set.pk, "compare_kind": "version", "compare_version": v1.pk}
    )
    assert response.status_code == 302
    job = Job.objects.get()
    assert (job.compare_kind, job.compare_version, job.text_b) == (
        CompareKind.VERSION,
        v1,
        v1.text,
    )
    response = client.post(
        url, {"sample_set": sample_set.pk, "compare_kind": "pasted", "compare_text": "  "}
    )
    assert response.status_code == 400 and "Paste the wording" in response.content.decode()
    response = client.post(
        url,
        {"sample_set": sample_set.pk, "compare_kind": "pasted", "compare_text": v2.text.upper()},
    )
    assert response.status_code == 400 and "same as this version" in response.content.decode()
    assert Job.objects.count() == 1


def test_start_job_freezes_pasted_text_b(author: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("labeling.jobs.broker.send_score_request", lambda request: None)
    version = make_version(make_policy(author), author)
    sample_set = SampleSet.objects.create(name="s", item_count=1, created_by=author)
    Item.objects.create(
        sample_set=sample_set, external_id="x", text="t", content_hash="h", row_number=1
    )

    job = start_job(
        version=version,
        sample_set=sample_set,
        sample_size=None,
        by=author,
        compare_text="# Other wording\n",
    )

    assert (job.compare_kind, job.text_b, job.compare_version) == (
        "pasted",
        "# Other wording\n",
        None,
    )
    assert job.item_count == 1  # chunks are made by the background preparation


def test_version_comparison_job_lists_flips_both_ways(client: Client, author: Any) -> None:
    policy = make_policy(author)
    v1 = make_version(policy, author)
    v2 = make_version(policy, author)
    job = build_job(author, [(1, 1, 0), (0, 0, 1), (0, 0, 0)], version=v2)
    Job.objects.filter(pk=job.pk).update(compare_kind=CompareKind.VERSION, compare_version=v1)

    html = login(client, author).get(reverse("labeling:job_detail", args=[job.pk])).content.decode()

    assert "v2 vs v1" in html
    assert 'id="flips-only_a"' in html and "content 0" in html
    assert 'id="flips-only_b"' in html and "content 1" in html


def full_stats() -> dict[str, Any]:
    return agreement_from_confusion(Confusion(2, 0, 0, 2)).to_dict()


def test_compare_view_scores_both_versions_on_the_same_items(client: Client, author: Any) -> None:
    policy = make_policy(author, min_sample_size=3)
    v1, v2 = make_version(policy, author), make_version(policy, author)
    left = build_job(author, [(1, 0, 0), (1, 1, 1), (0, 1, 1), (0, 0, 0)], version=v1)
    right = Job.objects.create(
        version=v2,
        sample_set=left.sample_set,
        status="succeeded",
        text_a="x",
        text_b="y",
        item_count=4,
        created_by=author,
        stats=full_stats(),
    )
    from labeling.models import Label

    for item, label in zip(
        Item.objects.filter(sample_set=left.sample_set).order_by("row_number"),
        [1, 1, 0, 0],
        strict=True,
    ):
        for side in "AB":
            Label.objects.create(job=right, item=item, side=side, label=label, p1=0.5)
    Job.objects.filter(pk=left.pk).update(stats=full_stats())
    PolicyEvaluation.objects.create(policy=policy, sample_set=left.sample_set)

    response = login(client, author).get(
        reverse("labeling:version_compare", args=[policy.pk]) + f"?a={v1.pk}&b={v2.pk}"
    )

    assert response.status_code == 200
    result = response.context["result"]
    assert result.on_evaluation_set and result.common == 4
    # v1: tp 1, fn 1, fp 1, tn 1; v2: all right.
    assert result.left_score.f1 == 0.5 and result.right_score.f1 == 1.0
    html = response.content.decode()
    assert 'id="f1-left">0.500<' in html and 'id="f1-right">1.000<' in html
    assert [r["item__text"] for r in result.left_only_one] == ["content 2"]
    assert [r["item__text"] for r in result.right_only_one] == ["content 0"]


def test_compare_view_without_common_jobs_says_so(client: Client, author: Any) -> None:
    policy = make_policy(author)
    v1, v2 = make_version(policy, author), make_version(policy, author)
    html = (
        login(client, author)
        .get(reverse("labeling:version_compare", args=[policy.pk]) + f"?a={v1.pk}&b={v2.pk}")
        .content.decode()
    )
    assert 'id="no-comparison"' in html


# Settings ------------------------------------------------------------------------------------


def test_admin_changes_settings_and_each_change_is_audited(
    client: Client, admin_user: Any, author: Any
) -> None:
    policy = make_policy(author, agreement_threshold=0.95, min_sample_size=200)
    sample_set = SampleSet.objects.create(name="eval", item_count=10, created_by=author)
    url = reverse("labeling:policy_settings", args=[policy.pk])
    login(client, admin_user)

    response = client.post(
        url,
        {
            "agreement_threshold": "92.5",
            "min_sample_size": "150",
            "evaluation_set": sample_set.pk,
            "confirm": "on",
        },
    )

    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.agreement_threshold, policy.min_sample_size) == (0.925, 150)
    assert PolicyEvaluation.objects.get(policy=policy).sample_set == sample_set
    changes = {c.field: c for c in PolicySettingChange.objects.filter(policy=policy)}
    assert set(changes) == {"agreement_threshold", "min_sample_size", "evaluation_set"}
    assert changes["agreement_threshold"].old_value == "95%"
    assert changes["agreement_threshold"].new_value == "92.5%"
    assert all(c.changed_by == admin_user for c in changes.values())
    page = client.get(url).content.decode()
    assert 'id="settings-audit"' in page and admin_user.username in page

    # Saving the same values records nothing.
    client.post(
        url,
        {"agreement_threshold": "92.5", "min_sample_size": "150", "evaluation_set": sample_set.pk},
    )
    assert PolicySettingChange.objects.filter(policy=policy).count() == 3


def test_settings_htmx_post_returns_the_fragment_and_bad_input_is_400(
    client: Client, admin_user: Any, author: Any
) -> None:
    policy = make_policy(author)
    url = reverse("labeling:policy_settings", args=[policy.pk])
    login(client, admin_user)

    bad = client.post(url, {"agreement_threshold": "40", "min_sample_size": "0"}, **HTMX)
    assert bad.status_code == 200  # htmx swaps only 2xx: the fragment carries the errors
    assert bad.content.decode().lstrip().startswith('<div id="policy-settings"')
    assert "greater than or equal to 50" in bad.content.decode()
    plain = client.post(url, {"agreement_threshold": "40", "min_sample_size": "0"})
    assert plain.status_code == 400 and "<html" in plain.content.decode()
    assert not PolicySettingChange.objects.exists()

    ok = client.post(
        url, {"agreement_threshold": "90", "min_sample_size": "5", "confirm": "on"}, **HTMX
    )
    assert ok.status_code == 200 and 'id="settings-audit"' in ok.content.decode()
    policy.refresh_from_db()
    assert policy.min_sample_size == 5


def test_author_sees_settings_but_cannot_change_them(client: Client, author: Any) -> None:
    policy = make_policy(author)
    url = reverse("labeling:policy_settings", args=[policy.pk])
    login(client, author)

    page = client.get(url)
    assert page.status_code == 200 and "Only an admin" in page.content.decode()
    assert (
        client.post(url, {"agreement_threshold": "90", "min_sample_size": "5"}).status_code == 403
    )
    policy.refresh_from_db()
    assert policy.min_sample_size != 5
