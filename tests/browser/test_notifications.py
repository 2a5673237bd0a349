"""A reviewer sees the unread badge, opens the notifications, marks them read, changes what
they are told about; an author pages a policy's activity, in a real browser."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from labeling.models import EventKind, GoldChange, NotificationPreference
from labeling.notify.events import notify_assignment
from labeling.notify.feed import PAGE_SIZE
from tests.labeling.review.test_review import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_badge_list_mark_read_and_choices(
    page: Any, live_server: Any, login: Any, author: Any, reviewer: Any
) -> None:
    job = make_job(author=author)
    notify_assignment(job=job, assignee=reviewer, task_count=2, batch="1", by=author)
    notify_assignment(job=job, assignee=reviewer, task_count=1, batch="2", by=author)
    login(reviewer)
    expect(page.locator("#unread-count")).to_have_text("2")
    page.click("#nav-notifications")
    expect(page.locator("#notification-list li")).to_have_count(2)
    expect(page.locator("#notification-list")).to_contain_text("2 mismatches of job")
    page.locator("#notification-list li").first.get_by_role("button", name="Mark read").click()
    expect(page.locator("#unread-count")).to_have_text("1")
    page.click("#mark-all-read")
    expect(page.locator("#unread-count")).to_have_count(0)

    page.goto(f"{live_server.url}/labeling/notifications/settings/")
    page.uncheck("input[name=assignment__in_app]")
    page.click("button[type=submit].primary")
    expect(page.locator(".messages")).to_contain_text("saved")
    pref = NotificationPreference.objects.get(user=reviewer, kind=EventKind.ASSIGNMENT)
    assert not pref.in_app


def test_activity_pages_with_htmx(page: Any, live_server: Any, login: Any, author: Any) -> None:
    job = make_job(author=author)
    policy = job.version.policy
    item = job.sample_set.items.first()
    GoldChange.objects.bulk_create(
        [
            GoldChange(policy=policy, item=item, new_label="1", new_source="typed")
            for _ in range(PAGE_SIZE + 5)
        ]
    )
    login(author)
    page.goto(f"{live_server.url}/labeling/policies/{policy.pk}/activity/")
    rows = page.locator("#activity tr.activity-gold")
    expect(rows).to_have_count(PAGE_SIZE)  # the newest: the gold edits
    page.click("#activity-more a")
    expect(rows).to_have_count(PAGE_SIZE + 5)
    expect(page.locator("#activity tr.activity-version")).to_have_count(1)
    expect(page.locator("#activity tr.activity-job")).to_have_count(2)  # started, ended
    expect(page.locator("#activity-more")).to_have_count(0)
