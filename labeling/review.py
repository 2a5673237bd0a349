"""The mismatch review queue: claim, decide, skip, earlier decisions, review notes.

Two reviewers must never hold the same task. Every claim ends in a conditional ``UPDATE``
(``filter(pk=..., <still claimable>).update(...)`` and one row changed), which is the guarantee
on every backend. On PostgreSQL the candidate row is also picked with ``FOR UPDATE SKIP LOCKED``
so concurrent reviewers walk past each other's rows instead of queueing behind them; SQLite has
no row locks (its IMMEDIATE transactions serialise writers), so there the conditional update
alone decides and the next candidate is tried.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Abs
from django.utils import timezone

from labeling.models import (
    Decision,
    GoldChoice,
    GoldLabel,
    GoldSource,
    Job,
    ReviewStatus,
    ReviewTask,
    Wording,
)
from policies.models import Policy

# How many candidates one claim tries before giving up on a busy queue (each failed try means
# another reviewer took that row between our read and our update).
_CLAIM_ATTEMPTS = 20
# Rows read per page when skipped tasks are filtered in Python (SQLite has no JSON containment).
_CANDIDATE_PAGE = 50
# Earlier decisions on content that starts the same way count as "near-identical" only when the
# shared start is this long; shorter texts are matched by their content hash alone.
_NEAR_PREFIX = 64


class ReviewError(Exception):
    """A review action that cannot happen as asked (lost claim, already resolved)."""


@dataclass(frozen=True)
class QueueFilter:
    """Which part of the queue a reviewer works on. Empty fields mean "any"."""

    job: Job | None = None
    policy: Policy | None = None
    side_said_1: str | None = None  # "A" or "B": the side whose label was 1
    max_margin: float | None = None  # |p1_a - p1_b| at most this

    def apply(self, tasks: QuerySet[ReviewTask]) -> QuerySet[ReviewTask]:
        if self.job is not None:
            tasks = tasks.filter(job=self.job)
        if self.policy is not None:
            tasks = tasks.filter(policy=self.policy)
        if self.side_said_1 == "A":
            tasks = tasks.filter(label_a=1)
        elif self.side_said_1 == "B":
            tasks = tasks.filter(label_b=1)
        elif self.side_said_1 is not None:
            raise ValueError(f"side_said_1 must be 'A' or 'B', not {self.side_said_1!r}")
        if self.max_margin is not None:
            tasks = tasks.alias(margin=Abs(F("p1_a") - F("p1_b"))).filter(
                margin__lte=self.max_margin
            )
        return tasks


def _claim_expiry() -> Any:
    return timezone.now() + timedelta(minutes=settings.COPE_CLAIM_MINUTES)


def _claimable(now: Any) -> Q:
    """Open, or claimed by someone whose claim has run out."""
    return Q(status=ReviewStatus.OPEN) | Q(status=ReviewStatus.CLAIMED, claim_expires_at__lt=now)


def _one_status(status: str) -> Q:
    """``status = X`` written as a range, to be walked in (status, id) order.

    Resolved tasks pile up at the low ids (reviewers work oldest first). Given ``status = 'open'
    ORDER BY id LIMIT 1`` PostgreSQL's planner assumes open rows are spread evenly and walks the
    primary key through every resolved row (5 ms at 12,500 resolved tasks, growing). With a
    range it cannot treat status as constant, so ``ORDER BY status, id`` is answered by the
    ``review_status_id`` index directly. A partial index on ``id WHERE status = 'open'`` would
    make this unnecessary.
    """
    return Q(status__gte=status, status__lte=status)


def _candidate_ids(tasks: QuerySet[ReviewTask], reviewer_id: int, now: Any) -> Iterator[int]:
    """Ids of claimable tasks this reviewer has not skipped, oldest first.

    Abandoned claims (expired) come before open tasks: they are older work somebody dropped,
    and looking them up first keeps each query on one index (the partial expiry index, then
    ``review_status_id``) instead of an ``OR`` the planner cannot walk in id order.
    """
    groups = [
        tasks.filter(_one_status(ReviewStatus.CLAIMED), claim_expires_at__lt=now),
        tasks.filter(_one_status(ReviewStatus.OPEN)),
    ]
    if connection.features.has_select_for_update_skip_locked:
        for group in groups:
            after = 0
            while True:
                # Locks the row until our transaction ends; rows other reviewers are
                # claiming right now are skipped rather than waited for.
                pk = (
                    group.filter(id__gt=after)
                    .exclude(skipped_by__contains=[reviewer_id])
                    .order_by("status", "id")
                    .select_for_update(skip_locked=True)
                    .values_list("id", flat=True)
                    .first()
                )
                if pk is None:
                    break
                yield pk
                after = pk
        return
    for group in groups:
        after = 0
        while True:
            rows = list(
                group.filter(id__gt=after)
                .order_by("status", "id")
                .values_list("id", "skipped_by")[:_CANDIDATE_PAGE]
            )
            if not rows:
                break
            for pk, skipped in rows:
                if reviewer_id not in (skipped or []):
                    yield pk
            after = rows[-1][0]


def claim_next_task(
    *,
    reviewer: Any,
    job: Job | None = None,
    policy: Policy | None = None,
    side_said_1: str | None = None,
    max_margin: float | None = None,
) -> ReviewTask | None:
    """Give the reviewer the next task to review, claimed for ``COPE_CLAIM_MINUTES``.

    A reviewer holds one task at a time: a still-valid claim inside the filter comes back first
    (its claim renewed); a claim outside the filter is given back to the queue.
    """
    scope = QueueFilter(job=job, policy=policy, side_said_1=side_said_1, max_margin=max_margin)
    tasks = scope.apply(ReviewTask.objects.all())
    now = timezone.now()
    expires = _claim_expiry()
    with transaction.atomic():
        held = (
            tasks.filter(
                status=ReviewStatus.CLAIMED, claimed_by=reviewer, claim_expires_at__gte=now
            )
            .order_by("id")
            .first()
        )
        if held is not None:
            ReviewTask.objects.filter(
                pk=held.pk, status=ReviewStatus.CLAIMED, claimed_by=reviewer
            ).update(claim_expires_at=expires)
            return _load(held.pk)
        ReviewTask.objects.filter(status=ReviewStatus.CLAIMED, claimed_by=reviewer).update(
            status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None
        )
        for attempt, pk in enumerate(_candidate_ids(tasks, reviewer.pk, now)):
            if attempt >= _CLAIM_ATTEMPTS:
                break
            claimed = (
                ReviewTask.objects.filter(_claimable(now), pk=pk).update(
                    status=ReviewStatus.CLAIMED, claimed_by=reviewer, claim_expires_at=expires
                )
                == 1
            )
            if claimed:
                return _load(pk)
    return None


def _load(pk: int) -> ReviewTask:
    return ReviewTask.objects.select_related("item", "job", "job__version", "policy").get(pk=pk)


def _holds_valid_claim(reviewer: Any) -> Q:
    return Q(status=ReviewStatus.CLAIMED, claimed_by=reviewer, claim_expires_at__gte=timezone.now())


def submit_decision(
    *,
    task: ReviewTask,
    reviewer: Any,
    label: str,
    wording: str,
    quote: str = "",
    note: str = "",
) -> Decision:
    """Resolve a task the reviewer holds a valid claim on; record the decision and gold label."""
    if label not in GoldChoice.values:
        raise ValueError(f"Unknown label {label!r}")
    if wording not in Wording.values:
        raise ValueError(f"Unknown wording {wording!r}")
    now = timezone.now()
    with transaction.atomic():
        resolved = ReviewTask.objects.filter(_holds_valid_claim(reviewer), pk=task.pk).update(
            status=ReviewStatus.RESOLVED, resolved_at=now, claim_expires_at=None
        )
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
            quote=quote.strip(),
            note=note.strip(),
        )
        GoldLabel.objects.update_or_create(
            policy_id=task.policy_id,
            item_id=task.item_id,
            defaults={
                "label": label,
                "decision": decision,
                "decided_by": reviewer,
                "source": GoldSource.REVIEW,  # b-gold: a typed label before it is replaced
            },
        )
    task.status = ReviewStatus.RESOLVED
    task.resolved_at = now
    return decision


def unskip_tasks(*, reviewer: Any, scope: QueueFilter) -> int:
    """Offer the reviewer the open tasks they skipped in this filter again; how many."""
    tasks = scope.apply(ReviewTask.objects.filter(status=ReviewStatus.OPEN))
    if connection.features.supports_json_field_contains:
        tasks = tasks.filter(skipped_by__contains=[reviewer.pk])
    count = 0
    with transaction.atomic():
        for pk, skipped in tasks.select_for_update().values_list("id", "skipped_by"):
            if reviewer.pk in (skipped or []):
                remaining = [user for user in skipped if user != reviewer.pk]
                ReviewTask.objects.filter(pk=pk).update(skipped_by=remaining)
                count += 1
    return count


def skip_task(*, task: ReviewTask, reviewer: Any) -> None:
    """Give a claimed task back; it is not offered to this reviewer again."""
    with transaction.atomic():
        current = (
            ReviewTask.objects.select_for_update()
            .filter(pk=task.pk, status=ReviewStatus.CLAIMED, claimed_by=reviewer)
            .values_list("skipped_by", flat=True)
            .first()
        )
        if current is None:
            raise ReviewError("You do not hold this task any more; nothing to skip.")
        skipped = list(current or [])
        if reviewer.pk not in skipped:
            skipped.append(reviewer.pk)
        changed = ReviewTask.objects.filter(
            pk=task.pk, status=ReviewStatus.CLAIMED, claimed_by=reviewer
        ).update(
            status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None, skipped_by=skipped
        )
        if changed != 1:
            raise ReviewError("You do not hold this task any more; nothing to skip.")


@dataclass(frozen=True)
class QueueCounts:
    open: int
    claimed: int
    resolved: int

    @property
    def total(self) -> int:
        return self.open + self.claimed + self.resolved


def queue_counts(scope: QueueFilter) -> QueueCounts:
    """Open (expired claims included), validly claimed and resolved tasks in the filter."""
    now = timezone.now()
    live_claim = Q(status=ReviewStatus.CLAIMED, claim_expires_at__gte=now)
    row = scope.apply(ReviewTask.objects.all()).aggregate(
        claimed=Count("id", filter=live_claim),
        resolved=Count("id", filter=Q(status=ReviewStatus.RESOLVED)),
        total=Count("id"),
    )
    return QueueCounts(
        open=row["total"] - row["claimed"] - row["resolved"],
        claimed=row["claimed"],
        resolved=row["resolved"],
    )


def earlier_decisions(task: ReviewTask, *, limit: int = 10) -> list[Decision]:
    """Decisions on the same or near-identical content (any policy, any job), newest first.

    Same content hash means same normalised text; a long shared start catches edits of a few
    trailing characters. The prefix match runs over decided items only, so it stays cheap.
    """
    item = task.item
    match = Q(task__item__content_hash=item.content_hash)
    prefix = item.text[:_NEAR_PREFIX]
    if len(item.text) > _NEAR_PREFIX:
        match |= Q(task__item__text__startswith=prefix)
    return list(
        Decision.objects.filter(match)
        .exclude(task_id=task.pk)
        .select_related("task__item", "task__job__version__policy", "reviewer")
        .order_by("-created_at", "-id")[:limit]
    )


@dataclass
class ClauseGroup:
    quote: str  # "" for decisions without a quoted clause
    decisions: list[Decision] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.decisions)


@dataclass
class ReviewNotes:
    job: Job
    groups: list[ClauseGroup]
    decided: int
    open_tasks: int
    wording_counts: dict[str, int]
    label_counts: dict[str, int]


def _clause_key(quote: str) -> str:
    return " ".join(quote.split()).casefold()


def review_notes(job: Job) -> ReviewNotes:
    """The job's decisions grouped by quoted clause, most-quoted clause first."""
    decisions = list(
        Decision.objects.filter(task__job=job)
        .select_related("task__item", "reviewer")
        .order_by("created_at", "id")
    )
    groups: dict[str, ClauseGroup] = {}
    for decision in decisions:
        key = _clause_key(decision.quote)
        group = groups.setdefault(key, ClauseGroup(quote=" ".join(decision.quote.split())))
        group.decisions.append(decision)
    ordered = sorted(groups.values(), key=lambda g: (g.quote == "", -g.count, g.quote.casefold()))
    wording_counts = {choice.label: 0 for choice in Wording}
    label_counts = {choice.label: 0 for choice in GoldChoice}
    for decision in decisions:
        wording_counts[decision.get_wording_display()] += 1
        label_counts[decision.get_label_display()] += 1
    return ReviewNotes(
        job=job,
        groups=ordered,
        decided=len(decisions),
        open_tasks=job.review_tasks.exclude(status=ReviewStatus.RESOLVED).count(),
        wording_counts=wording_counts,
        label_counts=label_counts,
    )
