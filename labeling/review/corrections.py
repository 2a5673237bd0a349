"""Correcting review decisions: undoing one's last decision from the queue, editing any
decision one made (admins: anyone's).

Each correction keeps a ``DecisionChange`` row (the decision before, and after an edit), and
moves the item's gold with it, in the same transaction, with a gold history row
(``record_gold_changes``, source "review"). Gold follows its precedence: a decision's gold is
corrected only while that decision is still the item's gold (a newer typed label, audit or
decision stays); an undone decision's gold goes back to what it was before the decision, or, with
no recorded gold before it, the row is removed and the import's expected label (if any) is the
gold again. Nothing here touches a version's frozen finalize evidence: it was copied when the
version was finalized.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from labeling.gold.history import GoldTransition, record_gold_changes
from labeling.gold.services import current_gold
from labeling.models import (
    Decision,
    DecisionAction,
    DecisionChange,
    GoldChange,
    GoldChoice,
    GoldLabel,
    GoldSource,
    ReviewStatus,
    ReviewTask,
    ReviewVote,
    Wording,
)
from labeling.review.claim import ReviewError, lock_reviewer
from labeling.review.snapshots import note_voted_task_change

# The fields a correction may change, kept before and after in ``DecisionChange``.
EDITABLE = ("label", "wording", "quote", "note")
DECISIONS_PER_PAGE = 50


def may_edit(user: Any, decision: Decision) -> bool:
    """A reviewer edits their own decisions; whoever may change any decision (admins) edits
    anyone's."""
    if user.has_perm("labeling.change_decision"):
        return True
    return bool(decision.reviewer_id == user.pk and user.has_perm("labeling.add_decision"))


def snapshot(decision: Decision) -> dict[str, Any]:
    fields = {name: getattr(decision, name) for name in EDITABLE}
    return {**fields, "reviewer": decision.reviewer_id}


@dataclass(frozen=True)
class Undone:
    task: ReviewTask  # claimed again by the reviewer
    before: dict[str, Any]  # the decision that was removed


def _gold_row(policy_id: int, item_id: int) -> GoldLabel | None:
    rows = GoldLabel.objects.select_for_update()
    return rows.filter(policy_id=policy_id, item_id=item_id).first()


def _restore_gold(task: ReviewTask, decision: Decision, by: User) -> None:
    """Put the item's gold back to what it was before ``decision``, if the decision is still
    its gold."""
    gold = _gold_row(task.policy_id, task.item_id)
    if gold is None or gold.decision_id != decision.pk:
        return  # a newer answer is the gold now: it stays
    changes = GoldChange.objects.filter(policy_id=task.policy_id, item_id=task.item_id)
    made = changes.filter(decision_id=decision.pk).order_by("-id").first()
    if made is not None and made.old_label and made.old_source != GoldSource.IMPORT:
        earlier = changes.filter(id__lt=made.pk).order_by("-id").first()
        GoldLabel.objects.filter(pk=gold.pk).update(
            label=made.old_label,
            source=made.old_source,
            decision_id=earlier.decision_id if earlier else None,
            decided_by_id=(earlier.changed_by_id if earlier else None) or decision.reviewer_id,
            updated_at=timezone.now(),
        )
    else:
        gold.delete()
    new_label, new_source = current_gold(policy_id=task.policy_id, item_ids=[task.item_id])[
        task.item_id
    ]
    record_gold_changes(
        policy_id=task.policy_id,
        transitions=[GoldTransition(task.item_id, gold.label, gold.source, new_label, new_source)],
        by=by,
        note=f"decision on mismatch #{task.pk} undone",
    )


def undo_last_decision(*, reviewer: User) -> Undone:
    """Remove the reviewer's newest decision made in the queue (not a carried-over copy) and
    give them that task back, claimed; any other claim they hold goes back to the queue (one
    claim per reviewer). The decision is kept as a ``DecisionChange`` (action undo)."""
    now = timezone.now()
    with transaction.atomic():
        lock_reviewer(reviewer)
        # A decision made of overlap votes (or a lead's adjudication) is not one reviewer's to
        # take back: the other votes stand (labeling.review.votes).
        decision = (
            Decision.objects.filter(reviewer=reviewer, task__carried_over=False)
            .exclude(Exists(ReviewVote.objects.filter(task_id=OuterRef("task_id"))))
            .order_by("-created_at", "-id")
            .first()
        )
        vote = ReviewVote.objects.filter(reviewer=reviewer).order_by("-created_at", "-id").first()
        if vote is not None and (decision is None or vote.created_at > decision.created_at):
            raise ReviewError(
                f"Your last decision, on mismatch #{vote.task_id}, is one of several independent "
                "decisions its policy asks for: it cannot be undone. Once the mismatch is "
                "decided, its final decision can be corrected on its edit page."
            )
        if decision is None:
            raise ReviewError("You have no decision to undo.")
        task = ReviewTask.objects.select_for_update().get(pk=decision.task_id)
        before = snapshot(decision)
        ReviewTask.objects.filter(status=ReviewStatus.CLAIMED, claimed_by=reviewer).exclude(
            pk=task.pk
        ).update(status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None)
        _restore_gold(task, decision, reviewer)
        DecisionChange.objects.create(
            task=task, action=DecisionAction.UNDO, before=before, after={}, changed_by=reviewer
        )
        decision.delete()
        expires = now + timedelta(minutes=settings.COPE_CLAIM_MINUTES)
        reopened = ReviewTask.objects.filter(pk=task.pk, status=ReviewStatus.RESOLVED).update(
            status=ReviewStatus.CLAIMED,
            claimed_by=reviewer,
            claim_expires_at=expires,
            resolved_at=None,
        )
        if reopened != 1:
            raise ReviewError("That decision's task changed meanwhile; nothing was undone.")
    task.refresh_from_db()
    return Undone(task=task, before=before)


def edit_decision(
    *, decision: Decision, by: User, label: str, wording: str, quote: str = "", note: str = ""
) -> DecisionChange | None:
    """Change a decision (``may_edit`` decides who may); the change is kept as a
    ``DecisionChange`` and the item's gold follows a changed label while this decision is its
    gold. None when nothing changed."""
    if label not in GoldChoice.values:
        raise ValueError(f"Unknown label {label!r}")
    if wording not in Wording.values:
        raise ValueError(f"Unknown wording {wording!r}")
    after_fields = {"label": label, "wording": wording, "quote": " ".join(quote.split())}
    after_fields["note"] = note.strip()
    with transaction.atomic():
        locked = Decision.objects.select_for_update().get(pk=decision.pk)
        if not may_edit(by, locked):
            raise PermissionDenied("You may edit only your own decisions.")
        before = snapshot(locked)
        after = {**before, **after_fields}
        if after == before:
            return None
        Decision.objects.filter(pk=locked.pk).update(**after_fields, updated_at=timezone.now())
        change = DecisionChange.objects.create(
            task_id=locked.task_id,
            action=DecisionAction.EDIT,
            before=before,
            after=after,
            changed_by=by,
        )
        if label != before["label"]:
            _follow_label(locked, label, by)
            # A voted task's final label is what its reviewers are compared with.
            note_voted_task_change(locked.task_id)
    return change


def _follow_label(decision: Decision, label: str, by: User) -> None:
    policy_id, item_id = ReviewTask.objects.filter(pk=decision.task_id).values_list(
        "policy_id", "item_id"
    )[0]
    gold = _gold_row(policy_id, item_id)
    if gold is None or gold.decision_id != decision.pk:
        return  # a newer answer is the gold: it stays
    GoldLabel.objects.filter(pk=gold.pk).update(label=label, updated_at=timezone.now())
    record_gold_changes(
        policy_id=policy_id,
        transitions=[GoldTransition(item_id, gold.label, gold.source, label, GoldSource.REVIEW)],
        by=by,
        decision_id=decision.pk,
        note="decision edited",
    )


def decision_history(task_id: int) -> list[DecisionChange]:
    """The task's corrections, newest first."""
    return list(
        DecisionChange.objects.filter(task_id=task_id)
        .select_related("changed_by")
        .order_by("-changed_at", "-id")
    )


def my_decisions(user: User, *, everyone: bool = False, page: int = 1) -> Page[Decision]:
    """A page of the user's decisions (``everyone``: all reviewers'), newest first."""
    decisions = Decision.objects.all() if everyone else Decision.objects.filter(reviewer=user)
    listed = decisions.select_related("task__item", "reviewer").order_by("-created_at", "-id")
    return Paginator(listed, DECISIONS_PER_PAGE).get_page(page)
