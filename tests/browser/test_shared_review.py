"""Two reviewers decide the same mismatches blind (review overlap 2) and a lead settles the
one they disagree on, in a real browser."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.models import Decision, ReviewStatus, ReviewTask
from tests.labeling.review.overlap_factories import make_lead
from tests.labeling.review.test_review import make_job, make_policy, make_version

# The agreement page shows figures the web-side Celery worker computes after each vote.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_workers"),
]


def _decide_queue(page: Any, url: str, labels: list[str], hidden_note: str = "") -> None:
    """Decide each card the queue shows with the next label, from the keyboard."""
    page.goto(url)
    for label in labels:
        card = page.locator(".task-card")
        task_id = card.get_attribute("data-task-id")
        if hidden_note:
            assert hidden_note not in page.content()  # blind: no other reviewer's vote
        page.keyboard.press(label)
        page.keyboard.press("a")
        page.keyboard.press("t")
        page.keyboard.type(f"note {label}")
        page.keyboard.press("Control+Enter")
        page.wait_for_function(
            "id => !document.querySelector(`.task-card[data-task-id='${id}']`)", arg=task_id
        )
        assert "independent decisions" in page.locator("#saved").inner_text()
    assert page.locator(".task-card").count() == 0


def test_two_reviewers_decide_blind_and_a_lead_adjudicates(
    page: Any,
    live_server: Any,
    login: Any,
    screenshot: Any,
    author: Any,
    reviewer: Any,
    second_reviewer: Any,
) -> None:
    version = make_version(make_policy(author, review_overlap=2), author)
    job = make_job(
        author=author,
        version=version,
        mismatches=[(1, 0.82, 0.31), (0, 0.44, 0.58)],
        texts=["first disputed post", "second disputed post"],
    )
    first, second = job.review_tasks.order_by("id")
    queue = f"{live_server.url}/labeling/review/?job={job.pk}"

    login(reviewer)
    _decide_queue(page, queue, ["1", "1"])
    page.context.clear_cookies()
    login(second_reviewer)
    _decide_queue(page, queue, ["1", "0"], hidden_note="note 1")
    screenshot("overlap-second-reviewer-done")

    assert ReviewTask.objects.get(pk=first.pk).status == ReviewStatus.RESOLVED
    assert ReviewTask.objects.get(pk=second.pk).status == ReviewStatus.ADJUDICATE

    page.context.clear_cookies()
    lead = make_lead()
    login(lead)
    page.get_by_role("link", name="Adjudication").click()
    assert page.locator('nav a[aria-current="page"]').inner_text() == "Adjudication"
    rows = page.locator("#adjudication-list tr[data-task-id]")
    assert rows.count() == 1 and rows.first.get_attribute("data-task-id") == str(second.pk)
    rows.first.get_by_role("link", name="Adjudicate").click()
    votes = page.locator("#votes tr.vote")
    assert votes.count() == 2
    assert {reviewer.username, second_reviewer.username} <= set(
        votes.locator("td:first-child").all_inner_texts()
    )
    screenshot("overlap-adjudicate")
    page.check('#adjudicate-form input[name="label"][value="0"]')
    page.check('#adjudicate-form input[name="wording"][value="b"]')
    page.click("#adjudicate-form button[type=submit]")
    page.wait_for_selector("#adjudication-empty")

    decision = Decision.objects.get(task_id=second.pk)
    assert (decision.label, decision.reviewer_id) == ("0", lead.pk)

    page.goto(f"{live_server.url}/labeling/jobs/{job.pk}/review-team/")
    # Current already, or "updating…" until the page's own poll brings the refreshed figures.
    page.wait_for_selector("#team-agreement:not([hx-get]) [data-figure='ac1']", timeout=60_000)
    assert "As of" in page.locator("#agreement-freshness").inner_text()
    assert page.locator('[data-figure="ac1"]').inner_text().strip() != "—"
    assert page.locator("#reviewer-figures tr[data-reviewer]").count() == 2
    screenshot("overlap-agreement")
