"""Overlap: several reviewers decide one mismatch independently, and a lead settles a split.

With a policy's ``review_overlap`` k above 1, a reviewer's decision is a vote
(``ReviewVote``): the task goes back to the open queue, never offered to that reviewer again
(their id joins ``skipped_by``, which the claim already steps over: the queue's claim path does
no new work). When k votes are in and agree on the label, the task's final ``Decision`` is made
from them; when they disagree the task waits in the adjudication queue, where a lead (the
``adjudicate_reviewtask`` permission) records the final decision. Only a final decision resolves
the task, so finalize and every count keep reading the task's status.

Blind: nothing shows a task's votes before the final decision except the adjudication page; the
card's earlier-decisions panel reads final decisions of other tasks only.
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import datetime, timedelta
from typing import TypedDict

from django.conf import settings
from django.contrib.auth.models import User
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Prefetch, QuerySet
from django.utils import timezone
from django_stubs_ext import WithAnnotations

from labeling.models import Decision, ReviewStatus, ReviewTask, ReviewVote
from labeling.review.claim import ReviewError
from labeling.review.final import record_final_decision
from labeling.review.snapshots import note_agreement_change
from policies.models import Policy

ADJUDICATION_PAGE_SIZE = 50


def task_with_vote_rule(task_id: int) -> ReviewTask:
    """The task's row with its vote rule read in the same statement, so that ``needs_votes``
    asks nothing more: a decision's save reads its task once. Raises ``ReviewTask.DoesNotExist``."""
    return _tasks_with_vote_rule().get(pk=task_id)


def needs_votes(task: ReviewTask) -> bool:
    """Whether a decision on this task is a vote: its policy asks for overlap, or votes were
    already given on it (the overlap was lowered since). Answered from the task's row when it was
    read by ``task_with_vote_rule``, else by one indexed query."""
    overlap, voted = getattr(task, "overlap", None), getattr(task, "voted", None)
    if overlap is None or voted is None:
        row = _tasks_with_vote_rule().filter(pk=task.pk).values_list("overlap", "voted").first()
        if row is None:
            return False
        overlap, voted = row
    return bool(overlap > 1 or voted)


@functools.cache
def _tasks_with_vote_rule() -> QuerySet[WithAnnotations[ReviewTask, _VoteRule]]:
    """Tasks with their policy's overlap and whether any vote was given on them, unordered:
    ``needs_votes``' statement without its task, assembled once per process."""
    return ReviewTask.objects.order_by().annotate(
        overlap=F("policy__review_overlap"),
        voted=Exists(ReviewVote.objects.filter(task_id=OuterRef("pk"))),
    )


class _VoteRule(TypedDict):
    overlap: int
    voted: bool


def _claimed_seconds(expires: datetime | None, now: datetime) -> float | None:
    """Seconds since the claim was taken or last renewed (a claim runs COPE_CLAIM_MINUTES)."""
    if expires is None:
        return None
    taken = expires - timedelta(minutes=settings.COPE_CLAIM_MINUTES)
    return max(0.0, (now - taken).total_seconds())


def _final_fields(votes: list[ReviewVote]) -> tuple[str, str, str, str]:
    """(label, wording, quote, note) of the final decision made of agreeing votes: the most
    chosen wording (the earliest vote's on a tie), the first quote given, every note."""
    counts = Counter(vote.wording for vote in votes)
    best = max(counts.values())
    wording = next(vote.wording for vote in votes if counts[vote.wording] == best)
    quote = next((vote.quote for vote in votes if vote.quote), "")
    note = "\n".join(vote.note for vote in votes if vote.note)
    return votes[0].label, wording, quote, note


def submit_vote(
    *, task: ReviewTask, reviewer: User, label: str, wording: str, quote: str = "", note: str = ""
) -> ReviewVote:
    """Record the reviewer's vote on a task they hold; decide the task when the votes are in.

    The task row is locked and changed by a conditional update on the reviewer's live claim,
    so two votes of one task are never counted concurrently (only the claim holder votes)."""
    now = timezone.now()
    with transaction.atomic():
        held = ReviewTask.objects.filter(
            pk=task.pk, status=ReviewStatus.CLAIMED, claimed_by=reviewer, claim_expires_at__gte=now
        )
        row = held.select_for_update().values_list("skipped_by", "claim_expires_at").first()
        if row is None:
            raise ReviewError(
                "Your claim on this task has ended (it expired, was skipped, or another "
                "reviewer resolved it). Nothing was recorded; take the next task."
            )
        if ReviewVote.objects.filter(task_id=task.pk, reviewer=reviewer).exists():
            raise ReviewError("You already decided this mismatch; nothing more was recorded.")
        vote = ReviewVote.objects.create(
            task_id=task.pk,
            reviewer=reviewer,
            label=label,
            wording=wording,
            quote=" ".join(quote.split()),
            note=note.strip(),
            seconds=_claimed_seconds(row[1], now),
        )
        overlap = Policy.objects.values_list("review_overlap", flat=True).get(pk=task.policy_id)
        votes = list(ReviewVote.objects.filter(task_id=task.pk).order_by("created_at", "id"))
        if len(votes) < overlap:
            status = ReviewStatus.OPEN
        elif len({v.label for v in votes}) == 1:
            status = ReviewStatus.RESOLVED
        else:
            status = ReviewStatus.ADJUDICATE
        skipped = [*(row[0] or []), reviewer.pk]
        changed = held.update(
            status=status,
            claimed_by=None,
            claim_expires_at=None,
            skipped_by=sorted(set(skipped)),
            resolved_at=now if status == ReviewStatus.RESOLVED else None,
        )
        if changed != 1:
            raise ReviewError("Your claim on this task ended while deciding; nothing recorded.")
        if status == ReviewStatus.RESOLVED:
            final_label, final_wording, quote, note = _final_fields(votes)
            record_final_decision(
                task=task,
                reviewer=reviewer,
                label=final_label,
                wording=final_wording,
                quote=quote,
                note=note,
            )
        # The vote's own save marked the figures out of date (``snapshots.vote_written``).
    task.status = status
    return vote


def adjudicate(
    *, task: ReviewTask, lead: User, label: str, wording: str, quote: str = "", note: str = ""
) -> Decision:
    """The lead's final decision on a task whose votes disagree: it is the one gold, notes and
    exports use. A task adjudicated meanwhile (another lead) is refused."""
    now = timezone.now()
    with transaction.atomic():
        changed = ReviewTask.objects.filter(pk=task.pk, status=ReviewStatus.ADJUDICATE).update(
            status=ReviewStatus.RESOLVED, resolved_at=now
        )
        if changed != 1:
            raise ReviewError("This mismatch is not waiting for adjudication (any more).")
        decision = record_final_decision(
            task=task, reviewer=lead, label=label, wording=wording, quote=quote, note=note
        )
        note_agreement_change(policy_id=task.policy_id, job_id=task.job_id)
    task.status = ReviewStatus.RESOLVED
    return decision


def awaiting_adjudication(*, policy: Policy | None = None, page: int = 1) -> Page[ReviewTask]:
    """Tasks whose votes disagree, oldest first, with their votes and reviewers."""
    tasks: QuerySet[ReviewTask] = ReviewTask.objects.filter(status=ReviewStatus.ADJUDICATE)
    if policy is not None:
        tasks = tasks.filter(policy=policy)
    tasks = (
        tasks.select_related("item", "job", "policy")
        .prefetch_related(Prefetch("votes", queryset=ReviewVote.objects.select_related("reviewer")))
        .order_by("id")
    )
    return Paginator(tasks, ADJUDICATION_PAGE_SIZE).get_page(page)


def task_votes(task: ReviewTask) -> list[ReviewVote]:
    return list(
        ReviewVote.objects.filter(task=task).select_related("reviewer").order_by("created_at")
    )
