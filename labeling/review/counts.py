"""The queue's task counts shown over the card, each read up to a cap."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.cache import caches
from django.db.models import IntegerField, QuerySet, Subquery
from django.db.models.functions import Now

from cope_studio.lib.db import any_of
from labeling.models import Job, ReviewStatus, ReviewTask
from labeling.review.claim import QueueFilter
from policies.models import Policy

# Counts (open, resolved, carried over: by index in queue_counts) that may be taken as over
# the cap for this many seconds once read over it. Claims are never: they are few and change.
_MONOTONE_COUNTS = (0, 3, 4)
_OVER_CAP_SECONDS = 10
_PARTS = 5  # the counts of ``_parts``
_FilterKey = tuple[int | None, int | None, str | None, float | None]


@dataclass(frozen=True)
class QueueCounts:
    """Task counts of a filter, each counted up to ``cap`` (then shown as "cap+")."""

    open: int
    claimed: int
    resolved: int
    carried: int = 0  # of the resolved, how many were carried over without asking
    cap: int = 0

    @property
    def total(self) -> int:
        return self.open + self.claimed + self.resolved

    def _over(self, n: int) -> bool:
        return bool(self.cap) and n > self.cap

    @property
    def open_over_cap(self) -> bool:
        return self._over(self.open)

    @property
    def resolved_over_cap(self) -> bool:
        return self._over(self.resolved)

    @property
    def carried_over_cap(self) -> bool:
        return self._over(self.carried)

    @property
    def total_over_cap(self) -> bool:
        return self.open_over_cap or self.resolved_over_cap


class _CappedCount(Subquery):
    """``count(*)`` of a queryset's first ``cap + 1`` ids, as a scalar subquery: an index range
    read of at most ``cap + 1`` entries, never the history. The queryset's own ordering, if it
    has one, names the index to read in order (``_parts``); otherwise it is read unordered."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS capped)"
    output_field = IntegerField()

    def __init__(self, tasks: QuerySet[ReviewTask], cap: int) -> None:
        if not tasks.query.order_by:
            tasks = tasks.order_by()  # not the model's default ordering
        super().__init__(tasks.values("id")[: cap + 1])


def _read_counts(scope: QueueFilter, wanted: tuple[int, ...], cap: int) -> dict[int, int]:
    """The capped counts ``wanted`` (indexes into ``_parts``) of the filter, read in one
    statement."""
    if not wanted:
        return {}
    row = _counts_statement(_filter_key(scope), wanted, cap).first()
    if row is None:
        raise ContentType.DoesNotExist("No content type row for review tasks.")
    return {i: int(row[f"c{i}"]) for i in wanted}


def _parts(scope: QueueFilter) -> list[QuerySet[ReviewTask]]:
    """The filter's open tasks, abandoned claims, live claims, resolved and carried-over tasks.
    Claims are read against the database's clock (``Now()``), so the statement holds no value
    of the moment and is built once (``_counts_statement``); claims' expiries are written from
    the web's clock, which agrees with it to within the clocks' drift: a count, not a claim."""
    # A policy's counts over the cap are read in the order of an index that starts with the
    # policy (as the claim's pick reads a policy's open tasks: ``claim._groups``). Left to
    # choose, PostgreSQL counted a policy's open tasks by walking every policy's open tasks
    # and filtering (``review_open_id``: 1,155 buffers at 5M labels, 8 ms from disk) and its
    # carried-over tasks by reading the table in order (983 buffers), on tables autovacuum has
    # not reached yet; read in order, each count is its policy's first ``cap + 1`` entries.
    if scope.policy is not None and scope.job is None:
        by_policy = True
        tasks = replace(scope, policy=None).apply(
            ReviewTask.objects.filter(any_of("policy_id", [scope.policy.pk]))
        )
    else:
        by_policy = False
        tasks = scope.apply(ReviewTask.objects.all())

    def in_order(part: QuerySet[ReviewTask], *index: str) -> QuerySet[ReviewTask]:
        return part.order_by(*index) if by_policy else part

    return [
        in_order(tasks.filter(status=ReviewStatus.OPEN), "policy_id", "id"),
        tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__lt=Now()),
        tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__gte=Now()),
        in_order(tasks.filter(status=ReviewStatus.RESOLVED), "policy_id", "status"),
        in_order(tasks.filter(carried_over=True), "policy_id", "id"),
    ]


@functools.lru_cache(maxsize=256)
def _counts_statement(key: _FilterKey, wanted: tuple[int, ...], cap: int) -> QuerySet[Any]:
    """One statement for the counts ``wanted``, assembled once per filter (``key``: job id,
    policy id, side, margin) and process: the card reads it on every request, and resolving
    its subqueries cost more than running them.

    A statement needs a row to hang the subqueries off; the task model's content type row is
    one that always exists, read by its unique (app, model) key from a small table (the ORM
    writes no ``SELECT`` without ``FROM``)."""
    job_id, policy_id, side, margin = key
    scope = QueueFilter(  # the filter's rows by key alone: the statement holds no other field
        job=Job(pk=job_id) if job_id is not None else None,
        policy=Policy(pk=policy_id) if policy_id is not None else None,
        side_said_1=side,
        max_margin=margin,
    )
    meta = ReviewTask._meta  # by natural key: a content type's id may change (a flushed database)
    parts = _parts(scope)
    statement: QuerySet[Any] = (
        ContentType.objects.filter(app_label=meta.app_label, model=meta.model_name)
        .annotate(**{f"c{i}": _CappedCount(parts[i], cap) for i in wanted})
        .values(*(f"c{i}" for i in wanted))
    )
    return statement


def _filter_key(scope: QueueFilter) -> _FilterKey:
    """The filter by value: job id, policy id, side, margin."""
    return (
        scope.job.pk if scope.job else None,
        scope.policy.pk if scope.policy else None,
        scope.side_said_1,
        scope.max_margin,
    )


def _cache_key(scope: QueueFilter, cap: int) -> str:
    return "cope:queue-over-cap:{}:{}:{}:{}:{}".format(
        cap, *("" if part is None else part for part in _filter_key(scope))
    )


def queue_counts(scope: QueueFilter, *, cap: int | None = None) -> QueueCounts:
    """Open (expired claims included), validly claimed, resolved and carried-over tasks.

    Each count reads at most ``cap + 1`` index entries (``COPE_QUEUE_COUNT_CAP``, 1,000 by
    default); a count above the cap is shown as "1000+". Open and claimed tasks are read from
    the partial indexes that hold only live work, so those counts cost what the live queue
    holds; the resolved history is counted only up to the cap.
    """
    cap = int(cap or settings.COPE_QUEUE_COUNT_CAP)
    # A count shown as "1000+" cannot visibly change with one decision: for a few seconds it is
    # taken as still over the cap instead of read again (each read walks cap + 1 index entries,
    # the costliest part of the card's counts). Counts under the cap are always read.
    key = _cache_key(scope, cap)
    memo = caches["local"]  # per process: see settings.CACHES
    over: set[int] = set(memo.get(key) or ())
    values = _read_counts(scope, tuple(i for i in range(_PARTS) if i not in over), cap)
    values.update({i: cap + 1 for i in over})
    now_over = {i for i in _MONOTONE_COUNTS if values[i] > cap}
    if now_over != over:
        memo.set(key, sorted(now_over), timeout=_OVER_CAP_SECONDS)
    open_, expired, claimed, resolved, carried = (values[i] for i in range(_PARTS))
    return QueueCounts(
        open=min(cap + 1, open_ + expired),
        claimed=claimed,
        resolved=resolved,
        carried=carried,
        cap=cap,
    )
