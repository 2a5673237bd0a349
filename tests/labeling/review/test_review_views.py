"""The review queue screens, plain and as htmx requests, and who may use them."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from labeling.models import Decision, GoldLabel, ReviewStatus, ReviewTask
from labeling.review.claim import claim_next_task
from labeling.review.decisions import submit_decision
from labeling.review.forms import SkipForm
from tests.labeling.review.test_review import make_job, tasks_of

HTMX = {"HTTP_HX_REQUEST": "true"}
START = {"start": "1"}  # "Start reviewing": the whole queue, chosen
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">'


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def job(author: Any) -> Any:
    return make_job(
        author=author,
        mismatches=[(1, 0.91, 0.12), (0, 0.35, 0.64)],
        texts=[XSS, "second mismatch"],
    )


# --- permissions ----------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client: Client, job: Any) -> None:
    response = client.get(reverse("labeling:queue"), {"start": 1})
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("persona", ["author", "outsider"])
def test_people_who_cannot_review_get_403(persona: str, request: Any, job: Any) -> None:
    client = client_for(request.getfixturevalue(persona))
    task = tasks_of(job)[0]
    assert client.get(reverse("labeling:queue"), {"start": 1}).status_code == 403
    post = {"label": "1", "wording": "a"}
    assert client.post(reverse("labeling:review_submit", args=[task.pk]), post).status_code == 403
    assert client.post(reverse("labeling:review_skip", args=[task.pk])).status_code == 403
    assert not ReviewTask.objects.exclude(status=ReviewStatus.OPEN).exists()


def test_admins_can_review(admin_user: Any, job: Any) -> None:
    response = client_for(admin_user).get(reverse("labeling:queue"), START)
    assert response.status_code == 200
    assert tasks_of(job)[0].claimed_by == admin_user


# --- the queue page -------------------------------------------------------------------------


def test_opening_the_whole_queue_claims_nothing(reviewer: Any, job: Any) -> None:
    """The queue page shows filters, counts and "Start reviewing"; nothing is claimed until
    the reviewer chose what to review."""
    client = client_for(reviewer)

    response = client.get(reverse("labeling:queue"))

    html = response.content.decode()
    assert response.status_code == 200 and 'id="queue-start"' in html
    assert "Start reviewing" in html and 'name="start"' in html
    assert "2 open" in html and "0 being reviewed" in html
    assert "data-task-id" not in html
    assert not ReviewTask.objects.filter(status=ReviewStatus.CLAIMED).exists()
    # The button submits the (empty) filter with ``start``: the whole queue, claimed now.
    started = client.get(
        reverse("labeling:queue"), {"job": "", "policy": "", "side": "", "start": "1"}
    )
    assert f'data-task-id="{tasks_of(job)[0].pk}"' in started.content.decode()


def test_a_link_with_a_filter_starts_reviewing_that_filter(reviewer: Any, job: Any) -> None:
    html = client_for(reviewer).get(reverse("labeling:queue"), {"side": "B"}).content.decode()
    assert f'data-task-id="{tasks_of(job)[1].pk}"' in html


def test_plain_decision_in_the_whole_queue_goes_on_reviewing(reviewer: Any, job: Any) -> None:
    client = client_for(reviewer)
    first = tasks_of(job)[0]
    client.get(reverse("labeling:queue"), START)

    response = client.post(
        reverse("labeling:review_submit", args=[first.pk]), {"label": "1", "wording": "a"}
    )

    assert response.status_code == 302 and response["Location"].endswith("?start=1")
    assert (
        f'data-task-id="{tasks_of(job)[1].pk}"' in client.get(response["Location"]).content.decode()
    )


def test_queue_page_claims_and_shows_the_oldest_mismatch(reviewer: Any, job: Any) -> None:
    response = client_for(reviewer).get(reverse("labeling:queue"), START)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="task-area"' in html
    first = tasks_of(job)[0]
    assert f'data-task-id="{first.pk}"' in html
    assert "p(1) = 0.910" in html and "p(1) = 0.120" in html
    assert 'class="diff"' in html  # the two wordings' differences are marked
    assert "Keys" in html and "<kbd>u</kbd>" in html
    assert 'hx-post="' in html and 'method="post"' in html
    assert 'src="/static/js/review.js"' in html
    first.refresh_from_db()
    assert first.status == ReviewStatus.CLAIMED and first.claimed_by == reviewer


def test_content_is_escaped_never_rendered_as_html(reviewer: Any, job: Any) -> None:
    html = client_for(reviewer).get(reverse("labeling:queue"), START).content.decode()

    assert "<script>window.__pwned" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "<img src=x onerror" not in html


def test_queue_counts_are_shown(reviewer: Any, job: Any) -> None:
    html = client_for(reviewer).get(reverse("labeling:queue"), START).content.decode()
    assert "1 open" in html and "1 being reviewed" in html and "0 reviewed" in html


def test_htmx_queue_request_gets_the_task_card_only(reviewer: Any, job: Any) -> None:
    response = client_for(reviewer).get(reverse("labeling:queue") + "?side=B", **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and html.lstrip().startswith('<div id="task-area"')
    assert f'data-task-id="{tasks_of(job)[1].pk}"' in html


@pytest.mark.parametrize("margin", ["7", "0.51", "-0.1", "nan", "much"])
def test_a_margin_outside_0_to_0_5_is_refused_and_claims_nothing(
    reviewer: Any, job: Any, margin: str
) -> None:
    client = client_for(reviewer)
    response = client.get(reverse("labeling:queue"), {"max_margin": margin, "start": "1"})
    fragment = client.get(reverse("labeling:queue"), {"max_margin": margin}, **HTMX)

    html, card = response.content.decode(), fragment.content.decode()
    assert response.status_code == 400 and "errorlist" in html
    for page in (html, card):
        assert "Nothing was claimed: The margin must be a number from 0 to 0.5" in page
        assert "data-task-id" not in page
    assert not ReviewTask.objects.filter(status=ReviewStatus.CLAIMED).exists()


def test_a_margin_of_0_5_is_accepted(reviewer: Any, job: Any) -> None:
    response = client_for(reviewer).get(reverse("labeling:queue"), {"max_margin": "0.5"})
    assert response.status_code == 200 and "errorlist" not in response.content.decode()


def test_empty_queue_says_all_mismatches_reviewed(reviewer: Any, job: Any) -> None:
    ReviewTask.objects.filter(job=job).update(status=ReviewStatus.RESOLVED)

    html = client_for(reviewer).get(reverse("labeling:queue") + f"?job={job.pk}").content.decode()

    assert "All mismatches reviewed" in html
    assert reverse("labeling:review_notes", args=[job.pk]) in html
    assert reverse("labeling:finalize_panel", args=[job.version_id]) in html


def test_queue_with_tasks_held_by_others_says_so(
    reviewer: Any, second_reviewer: Any, job: Any
) -> None:
    claim_next_task(reviewer=second_reviewer)
    submit_decision(
        task=claim_next_task(reviewer=second_reviewer),
        reviewer=second_reviewer,  # type: ignore[arg-type]
        label="1",
        wording="a",
    )
    claim_next_task(reviewer=second_reviewer)

    html = client_for(reviewer).get(reverse("labeling:queue"), START).content.decode()

    assert "Nothing left for you right now" in html


# --- deciding -------------------------------------------------------------------------------


def test_plain_decision_redirects_to_the_queue_with_the_filter(reviewer: Any, job: Any) -> None:
    client = client_for(reviewer)
    client.get(reverse("labeling:queue") + "?side=A")
    task = tasks_of(job)[0]

    response = client.post(
        reverse("labeling:review_submit", args=[task.pk]) + "?side=A",
        {"label": "0", "wording": "b", "quote": " Insults aimed at a **Target**. ", "note": "ok"},
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("labeling:queue") + "?side=A"
    decision = Decision.objects.get()
    assert (decision.label, decision.wording, decision.quote) == (
        "0",
        "b",
        "Insults aimed at a **Target**.",
    )
    assert GoldLabel.objects.get(item=task.item).label == "0"


def test_htmx_decision_swaps_in_the_next_task(reviewer: Any, job: Any) -> None:
    client = client_for(reviewer)
    client.get(reverse("labeling:queue"), {"start": 1})
    first, second = tasks_of(job)

    response = client.post(
        reverse("labeling:review_submit", args=[first.pk]),
        {"label": "1", "wording": "a"},
        **HTMX,
    )

    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert f'data-task-id="{second.pk}"' in html
    assert "1 reviewed" in html
    first.refresh_from_db()
    assert first.status == ReviewStatus.RESOLVED


def test_htmx_decision_on_the_last_task_shows_the_empty_state(reviewer: Any, job: Any) -> None:
    client = client_for(reviewer)
    for task in tasks_of(job):
        client.get(reverse("labeling:queue"), {"start": 1})
        response = client.post(
            reverse("labeling:review_submit", args=[task.pk]),
            {"label": "u", "wording": "n"},
            **HTMX,
        )
    assert "All mismatches reviewed" in response.content.decode()


def test_invalid_decision_shows_errors_and_keeps_the_task(reviewer: Any, job: Any) -> None:
    client = client_for(reviewer)
    client.get(reverse("labeling:queue"), {"start": 1})
    task = tasks_of(job)[0]

    plain = client.post(reverse("labeling:review_submit", args=[task.pk]), {"label": "1"})
    htmx = client.post(reverse("labeling:review_submit", args=[task.pk]), {"wording": "x"}, **HTMX)

    assert plain.status_code == 400 and "This field is required" in plain.content.decode()
    assert htmx.status_code == 200 and f'data-task-id="{task.pk}"' in htmx.content.decode()
    assert not Decision.objects.exists()


def test_decision_without_a_claim_is_refused_with_a_notice(
    reviewer: Any, second_reviewer: Any, job: Any
) -> None:
    task = claim_next_task(reviewer=second_reviewer)
    assert task is not None
    client = client_for(reviewer)

    plain = client.post(
        reverse("labeling:review_submit", args=[task.pk]), {"label": "1", "wording": "a"}
    )
    htmx = client.post(
        reverse("labeling:review_submit", args=[task.pk]), {"label": "1", "wording": "a"}, **HTMX
    )

    assert plain.status_code == 302
    assert "claim on this task has ended" in htmx.content.decode()
    assert not Decision.objects.exists()


def test_skip_gives_the_task_back_and_shows_the_next(reviewer: Any, job: Any) -> None:
    client = client_for(reviewer)
    client.get(reverse("labeling:queue"), {"start": 1})
    first, second = tasks_of(job)

    response = client.post(reverse("labeling:review_skip", args=[first.pk]), **HTMX)

    assert f'data-task-id="{second.pk}"' in response.content.decode()
    first.refresh_from_db()
    assert first.skipped_by == [reviewer.pk] and first.status == ReviewStatus.OPEN
    plain = client.post(reverse("labeling:review_skip", args=[second.pk]))
    assert plain.status_code == 302


def test_a_skip_whose_form_fails_changes_nothing(
    reviewer: Any, job: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(form: SkipForm) -> dict[str, Any]:
        raise ValidationError("This request came from an old page.")

    monkeypatch.setattr(SkipForm, "clean", refuse)
    client = client_for(reviewer)
    client.get(reverse("labeling:queue"), {"start": 1})
    first = tasks_of(job)[0]
    ReviewTask.objects.filter(job=job).exclude(pk=first.pk).update(skipped_by=[reviewer.pk])

    skip = client.post(reverse("labeling:review_skip", args=[first.pk]), **HTMX)
    unskip = client.post(reverse("labeling:review_unskip"))

    assert skip.status_code == 400 and "came from an old page" in skip.content.decode()
    assert unskip.status_code == 400
    first.refresh_from_db()
    assert first.status == ReviewStatus.CLAIMED and first.skipped_by == []
    assert ReviewTask.objects.exclude(pk=first.pk).get().skipped_by == [reviewer.pk]


def test_queue_only_answers_get_and_decisions_only_post(reviewer: Any, job: Any) -> None:
    client = client_for(reviewer)
    task = tasks_of(job)[0]
    assert client.post(reverse("labeling:queue")).status_code == 405
    assert client.get(reverse("labeling:review_submit", args=[task.pk])).status_code == 405


# --- review notes ---------------------------------------------------------------------------


def _decide_all(job: Any, reviewer: Any) -> None:
    quotes = ["quoted abuse counts only when endorsed", ""]
    for quote in quotes:
        task = claim_next_task(reviewer=reviewer, job=job)
        assert task is not None
        submit_decision(
            task=task, reviewer=reviewer, label="1", wording="b", quote=quote, note=f"note {quote}"
        )


def test_review_notes_page_groups_by_clause(author: Any, reviewer: Any, job: Any) -> None:
    _decide_all(job, reviewer)

    response = client_for(author).get(reverse("labeling:review_notes", args=[job.pk]))

    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert "quoted abuse counts only when endorsed" in html
    assert "No clause quoted" in html
    assert html.index("quoted abuse counts") < html.index("No clause quoted")
    assert "&lt;script&gt;" in html and "<script>window" not in html
    assert "B (twin) was right" in html
    assert "New version from review" in html
    assert f"?parent={job.version_id}&amp;from_job={job.pk}" in html


def test_review_notes_fragment_for_the_editor(author: Any, reviewer: Any, job: Any) -> None:
    _decide_all(job, reviewer)

    response = client_for(author).get(reverse("labeling:review_notes", args=[job.pk]), **HTMX)

    html = response.content.decode()
    assert "<html" not in html and f'id="review-notes-{job.pk}"' in html
    assert "2 decisions" in html


def test_review_notes_are_closed_to_outsiders(outsider: Any, job: Any) -> None:
    response = client_for(outsider).get(reverse("labeling:review_notes", args=[job.pk]))
    assert response.status_code == 403


def test_skipped_tasks_come_back_on_request(reviewer: Any, job: Any) -> None:
    client = client_for(reviewer)
    ReviewTask.objects.filter(job=job).update(skipped_by=[reviewer.pk])
    empty = client.get(reverse("labeling:queue"), {"job": job.pk}).content.decode()
    assert "Review the tasks I skipped" in empty

    response = client.post(reverse("labeling:review_unskip") + f"?job={job.pk}", **HTMX)

    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert 'class="card task-card"' in html
    assert ReviewTask.objects.filter(job=job, status=ReviewStatus.CLAIMED).count() == 1
