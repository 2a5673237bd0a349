"""A reviewer follows the count beside F1 to the gold audit, then confirms one suspected gold
label and corrects another from the keyboard, in a real browser."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from labeling.gold import audit
from labeling.models import GoldChange, GoldSource, Item
from tests.labeling.gold.test_gold_audit import CONSTRUCTED, HOSTILE, build_audit_job, item_ids

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_confirms_one_and_corrects_one_with_the_keyboard(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, reviewer: Any
) -> None:
    job = build_audit_job(author, CONSTRUCTED)
    ids = item_ids(job)
    Item.objects.filter(pk=ids[1]).update(text=HOSTILE)
    login(reviewer)

    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/")
    expect(page.locator("#gold-audit")).to_contain_text("3 gold labels under suspicion")
    page.click("#gold-audit-link")
    expect(page.locator(".suspect[data-open]")).to_have_count(3)
    assert HOSTILE in page.locator(f"#suspect-{ids[1]} .content-text").inner_text()
    assert page.evaluate("window.__pwned") is None
    screenshot("gold-audit")
    page.evaluate("window.__marker = 1")

    # "c": the first open entry's gold (0, from the import) is confirmed.
    page.keyboard.press("c")
    expect(page.locator(f"#suspect-{ids[0]}.resolved")).to_contain_text("confirmed as 0")
    # "f": the next open entry's gold (1) is corrected to the models' 0.
    page.keyboard.press("f")
    expect(page.locator(f"#suspect-{ids[1]}.resolved")).to_contain_text("corrected to 0")
    assert page.evaluate("window.__marker") == 1  # htmx swaps, no page load
    expect(page.locator(".suspect[data-open]")).to_have_count(1)

    confirmed = GoldChange.objects.get(item_id=ids[0])
    assert (confirmed.old_label, confirmed.new_label, confirmed.new_source) == (
        "0",
        "0",
        GoldSource.AUDIT,
    )
    assert confirmed.changed_by_id == reviewer.pk and confirmed.note == audit.CONFIRM_NOTE
    corrected = GoldChange.objects.get(item_id=ids[1])
    assert (corrected.old_label, corrected.new_label, corrected.new_source) == (
        "1",
        "0",
        GoldSource.AUDIT,
    )
    assert corrected.changed_by_id == reviewer.pk and corrected.note == audit.CORRECT_NOTE

    # The gold history link of a resolved entry shows the change with who and the note.
    page.locator(f"#suspect-{ids[0]} a").click()
    expect(page.locator(".gold-history-list")).to_contain_text(audit.CONFIRM_NOTE)
    assert reviewer.username in page.locator(".gold-history-list").inner_text()

    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/gold/audit/")
    expect(page.locator(".suspect[data-open]")).to_have_count(1)
    assert page.locator("#audit-count").inner_text() == "1 suspected gold error in this job."
    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/")
    expect(page.locator("#gold-audit")).to_contain_text("1 gold label under suspicion")
