"""Overlap: several blind decisions per mismatch, adjudication of disagreements, and what
finalize and the queue make of them (services, both databases)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.db import IntegrityError
from django.test import RequestFactory

from labeling.models import (
    Decision,
    GoldLabel,
    GoldSource,
    ReviewStatus,
    ReviewTask,
    ReviewVote,
)
from labeling.rater_agreement import rater_agreement
from labeling.release.finalize import finalize_readiness
from labeling.review.claim import QueueFilter, ReviewError, claim_next_task, skip_task, unskip_tasks
from labeling.review.corrections import undo_last_decision
from labeling.review.decisions import submit_decision
from labeling.review.earlier import earlier_decisions
from labeling.review.team import job_agreement
from labeling.review.votes import adjudicate, awaiting_adjudication
from tests.labeling.release.test_finalize import stats
from tests.labeling.review.overlap_factories import (
    as_units,
    decide_offered,
    make_lead,
    make_person,
    task_ids,
)
from tests.labeling.review.references import reference_alpha, reference_cohen
from tests.labeling.review.test_review import make_job, make_policy, make_version

MISMATCHES = [(1, 0.9, 0.1), (0, 0.2, 0.7), (1, 0.6, 0.4), (0, 0.3, 0.8)]


def overlap_job(author: Any, k: int = 2, mismatches: list[Any] | None = None) -> Any:
    policy = make_policy(author, review_overlap=k)
    version = make_version(policy, author)
    return make_job(
        author=author,
        version=version,
        mismatches=mismatches or MISMATCHES,
        texts=[f"overlap content {i}" for i in range(len(mismatches or MISMATCHES))],
        stats=stats(250, 248 / 250),
    )


def test_overlap_one_decides_at_once_and_records_no_vote(author: Any, reviewer: Any) -> None:
    job = overlap_job(author, k=1)
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None

    saved = submit_decision(task=task, reviewer=reviewer, label="1", wording="a")

    assert isinstance(saved, Decision)
    assert ReviewTask.objects.get(pk=task.pk).status == ReviewStatus.RESOLVED
    assert not ReviewVote.objects.exists()


def test_a_vote_sends_the_task_back_but_never_to_the_same_reviewer(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1)])
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None

    vote = submit_decision(task=task, reviewer=reviewer, label="1", wording="a")

    assert isinstance(vote, ReviewVote)
    row = ReviewTask.objects.get(pk=task.pk)
    assert (row.status, row.claimed_by) == (ReviewStatus.OPEN, None)
    assert not Decision.objects.exists() and not GoldLabel.objects.exists()
    assert claim_next_task(reviewer=reviewer, job=job) is None
    other = claim_next_task(reviewer=second_reviewer, job=job)
    assert other is not None and other.pk == task.pk


def test_unskipping_does_not_bring_back_a_task_the_reviewer_voted_on(
    author: Any, reviewer: Any
) -> None:
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    voted = claim_next_task(reviewer=reviewer, job=job)
    assert voted is not None
    submit_decision(task=voted, reviewer=reviewer, label="1", wording="a")
    skipped = claim_next_task(reviewer=reviewer, job=job)
    assert skipped is not None
    skip_task(task=skipped, reviewer=reviewer)

    assert unskip_tasks(reviewer=reviewer, scope=QueueFilter(job=job)) == 1

    again = claim_next_task(reviewer=reviewer, job=job)
    assert again is not None and again.pk == skipped.pk
    assert ReviewTask.objects.get(pk=voted.pk).skipped_by == [reviewer.pk]


def test_agreeing_votes_make_the_final_decision_and_gold(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    decide_offered(reviewer, job, {task_id: "1"})
    decide_offered(second_reviewer, job, {task_id: "1"})

    task = ReviewTask.objects.get(pk=task_id)
    assert task.status == ReviewStatus.RESOLVED and task.resolved_at is not None
    decision = Decision.objects.get(task=task)
    assert (decision.label, decision.reviewer) == ("1", second_reviewer)
    gold = GoldLabel.objects.get(policy=task.policy, item=task.item)
    assert (gold.label, gold.source, gold.decision) == ("1", GoldSource.REVIEW, decision)


def test_disagreeing_votes_wait_for_a_lead(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    decide_offered(reviewer, job, {task_id: "1"})
    decide_offered(second_reviewer, job, {task_id: "0"})

    task = ReviewTask.objects.get(pk=task_id)
    assert task.status == ReviewStatus.ADJUDICATE
    assert not Decision.objects.filter(task=task).exists()
    assert [t.pk for t in awaiting_adjudication().object_list] == [task_id]
    third = make_person("tia_reviewer")
    assert claim_next_task(reviewer=third, job=job) is None  # not in the queue any more

    lead = make_lead()
    decision = adjudicate(task=task, lead=lead, label="u", wording="n", note="ask legal")

    task.refresh_from_db()
    assert task.status == ReviewStatus.RESOLVED
    assert (decision.label, decision.reviewer, decision.note) == ("u", lead, "ask legal")
    assert GoldLabel.objects.get(item=task.item).decision == decision
    assert list(awaiting_adjudication().object_list) == []
    with pytest.raises(ReviewError):
        adjudicate(task=task, lead=lead, label="1", wording="a")
    assert Decision.objects.filter(task=task).count() == 1


def test_a_task_with_one_of_two_votes_is_not_reviewed_for_finalize(
    author: Any, reviewer: Any
) -> None:
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    decide_offered(reviewer, job, {task_id: "1"})

    assert finalize_readiness(job.version).missing == [
        f"1 mismatch of job #{job.pk} is not reviewed yet."
    ]


def test_disagreement_not_adjudicated_blocks_finalize_until_a_lead_decides(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    decide_offered(reviewer, job, {task_id: "1"})
    decide_offered(second_reviewer, job, {task_id: "0"})

    assert finalize_readiness(job.version).missing == [
        f"1 mismatch of job #{job.pk} is not reviewed yet."
    ]
    adjudicate(task=ReviewTask.objects.get(pk=task_id), lead=make_lead(), label="1", wording="a")
    assert finalize_readiness(job.version).missing == []


def test_the_card_never_shows_the_votes_of_the_same_task(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    """Blind: the second reviewer's card (earlier decisions on the same content) is empty
    while the first reviewer's vote exists."""
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    decide_offered(reviewer, job, {task_id: "1"})

    task = claim_next_task(reviewer=second_reviewer, job=job)

    assert task is not None and task.pk == task_id
    assert earlier_decisions(task) == []


def test_a_second_vote_of_one_reviewer_is_refused(author: Any, reviewer: Any) -> None:
    """Whatever path puts the task back in a voter's hands, one reviewer votes once."""
    job = overlap_job(author, k=3, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    decide_offered(reviewer, job, {task_id: "1"})
    ReviewTask.objects.filter(pk=task_id).update(skipped_by=[])  # e.g. edited by hand
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None

    with pytest.raises(ReviewError, match="already decided"):
        submit_decision(task=task, reviewer=reviewer, label="0", wording="a")
    assert ReviewVote.objects.filter(task_id=task_id).count() == 1
    with pytest.raises(IntegrityError):
        ReviewVote.objects.create(task_id=task_id, reviewer=reviewer, label="0", wording="a")


def test_votes_are_read_only_in_django_admin(admin_user: Any) -> None:
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    model_admin = site._registry[ReviewVote]

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


def test_two_reviewers_decide_blind_and_agreement_matches_the_references(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    """The issue's scenario: overlap 2, two reviewers decide the same mismatches without
    seeing each other's decisions; the disagreements are in the adjudication queue; κ, AC1 and
    α agree with the reference implementations on the same decisions."""
    mismatches = [(i % 2, 0.9, 0.1) for i in range(12)]
    job = overlap_job(author, mismatches=mismatches)
    ids = task_ids(job)
    first = dict(zip(ids, "110100110u01", strict=True))
    second = dict(zip(ids, "100100111u11", strict=True))

    assert sorted(decide_offered(reviewer, job, first)) == ids
    assert sorted(decide_offered(second_reviewer, job, second)) == ids

    disagree = [t for t in ids if first[t] != second[t]]
    assert [t.pk for t in awaiting_adjudication().object_list] == disagree
    assert Decision.objects.filter(task__job=job).count() == len(ids) - len(disagree)

    team = job_agreement(job)
    pairs = [(first[t], second[t]) for t in ids]
    units = as_units(job)
    assert team.figures.units == 12 and team.figures.raters == 2
    assert team.figures.cohen_kappa == pytest.approx(reference_cohen(pairs))
    assert team.figures.krippendorff_alpha == pytest.approx(reference_alpha(units))
    assert team.figures.gwet_ac1 == pytest.approx(rater_agreement(units, 3).gwet_ac1)
    assert team.awaiting == len(disagree) and team.adjudicated == 0

    lead = make_lead()
    for task in awaiting_adjudication().object_list:
        adjudicate(task=task, lead=lead, label=first[task.pk], wording="a")
    team = job_agreement(job)
    by_name = {row.username: row.figures for row in team.reviewers}
    assert by_name[reviewer.username].agreed_with_final == 12
    assert by_name[second_reviewer.username].agreed_with_final == 12 - len(disagree)
    assert team.adjudicated == len(disagree) and team.awaiting == 0
    assert all(row.figures.median_seconds is not None for row in team.reviewers)


def test_undo_refuses_a_vote_and_a_decision_made_of_votes(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    """Undo gives one reviewer's decision back to them; a vote, and the final decision the
    votes made, are not one reviewer's to take back (the other votes would be orphaned)."""
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    decide_offered(reviewer, job, {task_id: "1"})
    with pytest.raises(ReviewError, match="several independent decisions"):
        undo_last_decision(reviewer=reviewer)

    decide_offered(second_reviewer, job, {task_id: "1"})  # agreeing: the final decision is made
    with pytest.raises(ReviewError, match="several independent decisions"):
        undo_last_decision(reviewer=second_reviewer)
    assert ReviewTask.objects.get(pk=task_id).status == ReviewStatus.RESOLVED
    assert Decision.objects.filter(task_id=task_id).count() == 1
