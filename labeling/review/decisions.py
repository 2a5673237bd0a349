"""A reviewer's decision on a task they hold: with overlap 1 the task resolved, the decision and
the gold label recorded (with its gold history row), reruns of the same content settled; with a
policy's overlap above 1 the decision is the reviewer's vote (``labeling.review.votes``)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from labeling.models import Decision, GoldChoice, ReviewStatus, ReviewTask, ReviewVote, Wording
from labeling.review.claim import ReviewError
from labeling.review.final import record_final_decision
from labeling.review.votes import needs_votes, submit_vote


def submit_decision(
    *,
    task: ReviewTask,
    reviewer: User,
    label: str,
    wording: str,
    quote: str = "",
    note: str = "",
    reused: Decision | None = None,
) -> Decision | ReviewVote:
    """Resolve a task the reviewer holds a valid claim on; record the decision and gold label.

    ``reused`` is the earlier decision the reviewer repeated (the `r` key). The decision also
    resolves the same content's open tasks in jobs with the same two texts (carried over).
    When the policy asks for several independent decisions, the reviewer's vote is recorded
    instead (and the task decided once the votes are in).
    """
    if label not in GoldChoice.values:
        raise ValueError(f"Unknown label {label!r}")
    if wording not in Wording.values:
        raise ValueError(f"Unknown wording {wording!r}")
    if needs_votes(task):
        return submit_vote(
            task=task, reviewer=reviewer, label=label, wording=wording, quote=quote, note=note
        )
    now = timezone.now()
    with transaction.atomic():
        resolved = ReviewTask.objects.filter(
            pk=task.pk,
            status=ReviewStatus.CLAIMED,
            claimed_by=reviewer,
            claim_expires_at__gte=now,
        ).update(status=ReviewStatus.RESOLVED, resolved_at=now, claim_expires_at=None)
        if resolved != 1:
            raise ReviewError(
                "Your claim on this task has ended (it expired, was skipped, or another "
                "reviewer resolved it). Nothing was recorded; take the next task."
            )
        decision = record_final_decision(
            task=task,
            reviewer=reviewer,
            label=label,
            wording=wording,
            quote=quote,
            note=note,
            carried_from_id=(reused.carried_from_id or reused.pk) if reused is not None else None,
        )
    task.status = ReviewStatus.RESOLVED
    task.resolved_at = now
    return decision
