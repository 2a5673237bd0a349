"""Recording a task's final decision: the one gold labels, notes, corrections and exports read.

One writer for every way a task is decided: a reviewer alone (overlap 1), the reviewers' agreeing
votes, or a lead's adjudication. The caller has already moved the task to resolved with its own
conditional update, in the same transaction.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from labeling.gold.history import GoldTransition, record_gold_changes
from labeling.gold.services import current_gold, lock_gold_of
from labeling.models import Decision, GoldLabel, GoldSource, ReviewTask
from labeling.notify.events import queues_touched
from labeling.review.carry_over import carry_to_open_reruns

# What a decision replaces in the (policy, item) gold label, a typed one included.
_GOLD_FIELDS = ["label", "decision", "decided_by", "updated_at", "source"]


def record_final_decision(
    *,
    task: ReviewTask,
    reviewer: User,
    label: str,
    wording: str,
    quote: str = "",
    note: str = "",
    carried_from_id: int | None = None,
) -> Decision:
    """The task's decision, its gold label and gold history row; reruns of the same content
    settled. Runs inside the caller's transaction."""
    lock_gold_of(task.item_id)  # gold writers of one item take turns, as in ``set_gold``
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
        carried_from_id=carried_from_id,
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
        transitions=[GoldTransition(task.item_id, old_label, old_source, label, GoldSource.REVIEW)],
        by=reviewer,
        decision_id=decision.pk,
    )
    carry_to_open_reruns(decision, task)
    queues_touched([task.job_id])  # the job's queue may be empty now (told after commit)
    return decision
