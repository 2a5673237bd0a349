"""A reviewer's decision on a task they hold: the task resolved, the decision and the gold
label recorded (with its gold history row), reruns of the same content settled."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from labeling.gold.history import GoldTransition, record_gold_changes
from labeling.gold.services import current_gold
from labeling.models import (
    Decision,
    GoldChoice,
    GoldLabel,
    GoldSource,
    Item,
    ReviewStatus,
    ReviewTask,
    Wording,
)
from labeling.notify.events import queues_touched
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
        if connection.features.has_select_for_update:
            # Gold writers of one item take turns (as ``set_gold`` does), so each history row
            # starts from the gold the previous writer left.
            Item.objects.select_for_update().filter(pk=task.item_id).values("pk").first()
        old_label, old_source = current_gold(policy_id=task.policy_id, item_ids=[task.item_id])[
            task.item_id
        ]
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
        record_gold_changes(
            policy_id=task.policy_id,
            transitions=[
                GoldTransition(task.item_id, old_label, old_source, label, GoldSource.REVIEW)
            ],
            by=reviewer,
            decision_id=decision.pk,
        )
        carry_to_open_reruns(decision, task)
        queues_touched([task.job_id])
    task.status = ReviewStatus.RESOLVED
    task.resolved_at = now
    return decision
