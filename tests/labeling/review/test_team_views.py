"""Pages of shared review: the adjudication queue (leads and admins only), a mismatch's
adjudication, a job's and a policy's reviewer agreement, and a job's assignment form."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.models import Decision, ReviewStatus, ReviewTask
from labeling.review.claim import claim_next_task
from labeling.review.decisions import submit_decision
from labeling.review.snapshots import refresh_agreement
from tests.labeling.review.overlap_factories import decide_offered, make_lead, task_ids
from tests.labeling.review.test_overlap import overlap_job

HTMX = {"HTTP_HX_REQUEST": "true"}
DECISION = {"label": "0", "wording": "b", "quote": "", "note": "settled"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def split(author: Any, reviewer: Any, second_reviewer: Any) -> Any:
    """A job with overlap 2 whose one mismatch the two reviewers decided differently."""
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    decide_offered(reviewer, job, {task_id: "1"})
    decide_offered(second_reviewer, job, {task_id: "0"})
    return ReviewTask.objects.get(pk=task_id)


def test_a_reviewer_cannot_adjudicate(split: Any, reviewer: Any) -> None:
    client = client_for(reviewer)

    assert client.get(reverse("labeling:adjudication_queue")).status_code == 403
    url = reverse("labeling:adjudicate_task", args=[split.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, DECISION).status_code == 403
    assert ReviewTask.objects.get(pk=split.pk).status == ReviewStatus.ADJUDICATE


@pytest.mark.parametrize("who", ["lead", "admin"])
def test_a_lead_or_admin_sees_the_queue_and_the_votes(
    split: Any, who: str, admin_user: Any, reviewer: Any, second_reviewer: Any
) -> None:
    client = client_for(make_lead() if who == "lead" else admin_user)

    page = client.get(reverse("labeling:adjudication_queue"))
    fragment = client.get(reverse("labeling:adjudication_queue"), **HTMX)
    votes = client.get(reverse("labeling:adjudicate_task", args=[split.pk]))

    assert page.status_code == 200 and f'data-task-id="{split.pk}"' in page.content.decode()
    assert (
        fragment.content.decode()
        .lstrip()
        .startswith('<section class="card" id="adjudication-list"')
    )
    body = votes.content.decode()
    assert reviewer.username in body and second_reviewer.username in body
    assert 'id="adjudicate-form"' in body


def test_a_lead_adjudicates_plain_and_with_htmx(
    author: Any, split: Any, reviewer: Any, second_reviewer: Any
) -> None:
    lead = make_lead()
    client = client_for(lead)
    url = reverse("labeling:adjudicate_task", args=[split.pk])

    response = client.post(url, DECISION)

    assert response.status_code == 302
    assert response["Location"] == reverse("labeling:adjudication_queue")
    decision = Decision.objects.get(task=split)
    assert (decision.label, decision.reviewer, decision.note) == ("0", lead, "settled")
    # A second adjudication (another tab) changes nothing and says so.
    again = client.post(url, {**DECISION, "label": "1"}, **HTMX)
    assert again.status_code == 204 and again["HX-Redirect"] == reverse(
        "labeling:adjudication_queue"
    )
    assert Decision.objects.get(task=split).label == "0"


def test_an_invalid_adjudication_is_shown_again(split: Any) -> None:
    response = client_for(make_lead()).post(
        reverse("labeling:adjudicate_task", args=[split.pk]), {"label": "7"}
    )

    assert response.status_code == 400
    assert ReviewTask.objects.get(pk=split.pk).status == ReviewStatus.ADJUDICATE


def test_the_card_says_a_vote_was_saved_without_showing_other_votes(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    first, _second = task_ids(job)
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None and task.pk == first
    submit_decision(task=task, reviewer=reviewer, label="u", wording="n", note="first-secret")
    client = client_for(second_reviewer)
    client.get(reverse("labeling:queue"), {"job": job.pk})  # claims the first mismatch

    response = client.post(
        reverse("labeling:review_submit", args=[first]) + f"?job={job.pk}", DECISION, **HTMX
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert f"Saved your decision on mismatch #{first}" in body
    assert "2 independent decisions" in body
    assert "first-secret" not in body  # the other reviewer's vote stays hidden
    assert ReviewTask.objects.get(pk=first).status == ReviewStatus.ADJUDICATE


def test_job_and_policy_agreement_pages_show_the_figures(
    split: Any, reviewer: Any, author: Any
) -> None:
    client = client_for(reviewer)
    refresh_agreement(job_id=split.job_id)  # the Celery task, run here

    job_page = client.get(reverse("labeling:job_review_team", args=[split.job_id]))
    policy_page = client.get(reverse("labeling:policy_review_team", args=[split.policy_id]))

    for page in (job_page, policy_page):
        body = page.content.decode()
        assert page.status_code == 200
        assert 'data-figure="ac1"' in body and 'data-figure="alpha"' in body
        assert f'data-reviewer="{reviewer.username}"' in body
    assert 'id="assign-form"' not in job_page.content.decode()  # reviewers cannot assign


def test_an_author_assigns_plain_and_with_htmx(
    author: Any, reviewer: Any, second_reviewer: Any, outsider: Any
) -> None:
    job = overlap_job(author, k=1)
    client = client_for(author)
    url = reverse("labeling:job_assign", args=[job.pk])

    plain = client.post(url, {"mode": "named", "reviewers": [reviewer.pk]})
    assert plain.status_code == 302
    assigned = list(job.review_tasks.values_list("assigned_to", flat=True))
    assert assigned == [[reviewer.pk]] * len(task_ids(job))

    fragment = client.post(url, {"mode": "open"}, **HTMX)
    assert fragment.status_code == 200
    assert 'id="assignment"' in fragment.content.decode()
    assert all(t == [] for t in job.review_tasks.values_list("assigned_to", flat=True))

    refused = client.post(url, {"mode": "split"})
    assert refused.status_code == 400
    assert "Choose the reviewers" in refused.content.decode()

    assert client_for(reviewer).post(url, {"mode": "open"}).status_code == 403
    assert (
        client_for(outsider).get(reverse("labeling:job_review_team", args=[job.pk])).status_code
        == 403
    )
