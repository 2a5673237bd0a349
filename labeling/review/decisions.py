"""A reviewer's decision on a task they hold: the task resolved, the decision and the gold
label recorded, reruns of the same content settled."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from labeling.models import (
    Decision,
    GoldChoice,
    GoldLabel,
    GoldSource,
    ReviewStatus,
    ReviewTask,
    Wording,
)
from labeling.review.carry_over import carry_to_open_reruns
from labeling.review.claim import ReviewError

# What a decision replaces in the (policy, item) gold label, a typed one included.
_GOLD_FIELDS = ["label", "decision", "decided_by", "updated_at", "source"]


def submit_decision(
    *,
    task: ReviewTask,
    reviewer: User,
    label: str,
    wording: str,
    quote: str = "",
    note: str = "",
    reused: Decision | None = None,
) -> Decision:
    """Resolve a task the reviewer holds a valid claim on; record the decision and gold label.

    ``reused`` is the earlier decision the reviewer repeated (the `r` key). The decision also
    resolves the same content's open tasks in jobs with the same two texts (carried over).
    """
    if label not in GoldChoice.values:
        raise ValueError(f"Unknown label {label!r}")
    if wording not in Wording.values:
        raise ValueError(f"Unknown wording {wording!r}")
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
        decision = Decision.objects.create(
            task_id=task.pk,
            reviewer=reviewer,
            label=label,
            wording=wording,
            quote=" ".join(quote.split()),  # one spelling per clause: notes group on it
            note=note.strip(),
            carried_from_id=(reused.carried_from_id or reused.pk) if reused is not None else None,
        )
        GoldLabel.objects.bulk_create(
            [
                GoldLabel(
                    policy_id=task.policy_id,
                    item_id=task.item_id,
                    label=label,
                    decision=decision,
                    decided_by=reviewer,
                    source=GoldSource.REVIEW,
                )
            ],
            update_conflicts=True,
            unique_fields=["policy", "item"],
            update_fields=_GOLD_FIELDS,
        )
        carry_to_open_reruns(decision, task)
    task.status = ReviewStatus.RESOLVED
    task.resolved_at = now
    return decision
