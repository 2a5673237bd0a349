"""A reviewer works through the mismatch queue from the keyboard in a real browser."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.models import Decision, GoldLabel, ReviewStatus
from tests.labeling.review.test_review import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> you idiot'
NOTE = "typed 0 1 u a b n s q t here: shortcuts must not fire while typing"


def test_reviewer_reviews_every_mismatch_from_the_keyboard(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, reviewer: Any
) -> None:
    job = make_job(
        author=author,
        mismatches=[(1, 0.82, 0.31), (0, 0.44, 0.58), (1, 0.71, 0.22)],
        texts=[
            HOSTILE,
            "Jordan is a clown and should log off forever",
            "great talk, terrible slides",
        ],
    )
    login(reviewer)
    page.goto(f"{live_server.url}/labeling/review/?job={job.pk}")
    page.evaluate("window.__marker = 1")

    # Hostile content is shown as text and never runs.
    assert page.locator("#task-content").inner_text() == HOSTILE
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".side-a del.diff").first.is_visible()
    assert page.locator(".side-b ins.diff").first.is_visible()
    assert not page.locator(".side-a ins.diff").first.is_visible()
    screenshot("review-queue")

    seen: list[str] = []
    for _ in range(3):
        card = page.locator(".task-card")
        task_id = card.get_attribute("data-task-id")
        assert task_id not in seen
        seen.append(task_id)
        page.keyboard.press("1")
        page.keyboard.press("a")
        assert page.locator('input[name="label"][value="1"]').is_checked()
        assert page.locator('input[name="wording"][value="a"]').is_checked()
        page.keyboard.press("t")
        page.keyboard.type(NOTE)
        # Typing "0", "u", "b", "n" in the note must not have changed the choices.
        assert page.locator('input[name="label"][value="1"]').is_checked()
        assert page.locator('input[name="wording"][value="a"]').is_checked()
        page.keyboard.press("Control+Enter")
        page.wait_for_function(
            "id => !document.querySelector(`.task-card[data-task-id='${id}']`)", arg=task_id
        )

    page.locator("#queue-empty").wait_for()
    assert "All mismatches reviewed" in page.locator("#queue-empty").inner_text()
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert page.evaluate("window.__pwned") is None
    screenshot("review-queue-done")

    decisions = Decision.objects.filter(task__job=job)
    assert decisions.count() == 3
    assert {(d.label, d.wording, d.note) for d in decisions} == {("1", "a", NOTE)}
    assert GoldLabel.objects.filter(policy=job.version.policy).count() == 3
    assert not job.review_tasks.exclude(status=ReviewStatus.RESOLVED).exists()


def test_skip_and_enter_from_the_keyboard(
    page: Any, live_server: Any, login: Any, author: Any, reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.3, 0.7)], texts=["one", "two"])
    first, second = job.review_tasks.order_by("id")
    login(reviewer)
    page.goto(f"{live_server.url}/labeling/review/")
    # The whole queue claims nothing until the reviewer starts.
    page.locator("#queue-start").wait_for()
    assert not job.review_tasks.filter(status=ReviewStatus.CLAIMED).exists()
    page.click("#start-reviewing")
    page.locator(f".task-card[data-task-id='{first.pk}']").wait_for()
    page.evaluate("window.__marker = 1")

    page.keyboard.press("s")
    page.locator(f".task-card[data-task-id='{second.pk}']").wait_for()
    page.keyboard.press("u")
    page.keyboard.press("n")
    page.keyboard.press("q")
    page.keyboard.type("Read insults literally")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.locator("#queue-empty").wait_for()

    assert "Nothing left for you right now" in page.locator("#queue-empty").inner_text()
    assert page.evaluate("window.__marker") == 1
    decision = Decision.objects.get()
    assert (decision.task_id, decision.label, decision.wording, decision.quote) == (
        second.pk,
        "u",
        "n",
        "Read insults literally",
    )
    first.refresh_from_db()
    assert first.skipped_by == [reviewer.pk]


def test_r_reuses_the_earlier_decision_and_the_next_content_stays_in_view(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, reviewer: Any
) -> None:
    from labeling.review.claim import claim_next_task
    from labeling.review.decisions import submit_decision
    from tests.labeling.review.test_review_history import rerun

    job = make_job(
        author=author,
        mismatches=[(1, 0.8, 0.2), (0, 0.3, 0.7)],
        texts=["first content, decided before", "second content, new"],
    )
    task = claim_next_task(reviewer=reviewer, job=job)
    earlier = submit_decision(
        task=task, reviewer=reviewer, label="u", wording="n", quote="the clause", note="unclear"
    )
    # A rerun whose text A changed: the decided content is asked again, with `r` to reuse.
    again = rerun(job, author, text_a=job.text_a + "\nA clarified clause.\n")
    first, second = again.review_tasks.order_by("id")
    login(reviewer)
    page.goto(f"{live_server.url}/labeling/review/?job={again.pk}")
    page.evaluate("window.__marker = 1")
    page.locator(f".task-card[data-task-id='{first.pk}']").wait_for()
    assert "Reuse this decision" in page.locator("#reusable").inner_text()
    screenshot("review-reuse")
    # Scrolled down to the form, as after typing a note.
    page.locator("#decision-form button.primary").scroll_into_view_if_needed()

    page.keyboard.press("r")
    page.locator(f".task-card[data-task-id='{second.pk}']").wait_for()

    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    top = page.evaluate("document.getElementById('task-content').getBoundingClientRect().top")
    height = page.evaluate("window.innerHeight")
    assert 0 <= top < height, f"the next content is out of view (top {top}, viewport {height})"
    assert page.locator("#reusable").count() == 0  # nothing decided before on this one
    reused = Decision.objects.get(task=first)
    assert (reused.label, reused.wording, reused.quote, reused.note) == (
        "u",
        "n",
        "the clause",
        "unclear",
    )
    assert reused.carried_from_id == earlier.pk


def test_z_undoes_the_last_decision_and_q_quotes_the_selection(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.3, 0.7)], texts=["one", "two"])
    first, second = job.review_tasks.order_by("id")
    login(reviewer)
    page.goto(f"{live_server.url}/labeling/review/?job={job.pk}")
    page.evaluate("window.__marker = 1")
    page.locator(f".task-card[data-task-id='{first.pk}']").wait_for()

    # Select a few words of wording A, then `q`: they become the quoted clause.
    page.evaluate(
        """() => {
          const wording = document.querySelector('.side-a .wording');
          const walker = document.createTreeWalker(wording, NodeFilter.SHOW_TEXT);
          const nodes = [];
          while (walker.nextNode()) nodes.push(walker.currentNode);
          const first = nodes.find((n) => n.data.includes('Read'));
          const last = nodes.find((n) => n.data.includes('literally'));
          const range = document.createRange();
          range.setStart(first, first.data.indexOf('Read'));
          range.setEnd(last, last.data.indexOf('literally') + 'literally'.length);
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
        }"""
    )
    page.keyboard.press("q")
    assert page.locator("input[name=quote]").input_value() == "Read insults literally"
    page.keyboard.press("Escape")
    # Without a selection, `q` only goes to the field, keeping what is there.
    page.evaluate("window.getSelection().removeAllRanges()")
    page.keyboard.press("q")
    assert page.locator("input[name=quote]").input_value() == "Read insults literally"
    page.keyboard.press("Escape")

    page.keyboard.press("0")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.locator(f".task-card[data-task-id='{second.pk}']").wait_for()
    assert "Saved your decision on mismatch" in page.locator("#saved").inner_text()

    page.keyboard.press("z")
    page.locator(f".task-card[data-task-id='{first.pk}']").wait_for()
    screenshot("review-undone")

    assert "was undone" in page.locator("#task-area").inner_text()
    assert page.locator('input[name="label"][value="0"]').is_checked()
    assert page.locator('input[name="wording"][value="b"]').is_checked()
    assert page.locator("input[name=quote]").input_value() == "Read insults literally"
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert not Decision.objects.filter(task=first).exists()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == ReviewStatus.CLAIMED and first.claimed_by_id == reviewer.pk
    assert second.status == ReviewStatus.OPEN

    # Corrected and saved again: the decision is the corrected one.
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.locator(f".task-card[data-task-id='{second.pk}']").wait_for()
    assert Decision.objects.get(task=first).label == "1"


def test_a_key_pressed_before_htmx_settles_the_new_card_still_stays_on_the_page(
    page: Any, live_server: Any, login: Any, author: Any, reviewer: Any
) -> None:
    """htmx binds swapped-in content only when it settles; a shortcut pressed in between must
    not post the card's form the plain way (a full page load). The settle delay is widened to
    make that window certain."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.3, 0.7)], texts=["one", "two"])
    first, second = job.review_tasks.order_by("id")
    login(reviewer)
    page.goto(f"{live_server.url}/labeling/review/?job={job.pk}")
    page.locator(f".task-card[data-task-id='{first.pk}']").wait_for()
    page.evaluate("window.__marker = 1; htmx.config.defaultSettleDelay = 3000")

    page.keyboard.press("0")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    page.locator(f".task-card[data-task-id='{second.pk}']").wait_for()
    page.keyboard.press("z")  # the undo form came with this card and is not settled yet
    page.locator(f".task-card[data-task-id='{first.pk}']").wait_for()

    assert "was undone" in page.locator("#task-area").inner_text()
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert not Decision.objects.filter(task=first).exists()
