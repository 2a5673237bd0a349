"""The queue's task counts shown over the card, each read up to a cap."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.cache import caches
from django.db.models import IntegerField, QuerySet, Subquery
from django.utils import timezone

from labeling.models import ReviewStatus, ReviewTask
from labeling.review.claim import QueueFilter

# Counts (open, resolved, carried over: by index in queue_counts) that may be taken as over
# the cap for this many seconds once read over it. Claims are never: they are few and change.
_MONOTONE_COUNTS = (0, 3, 4)
_OVER_CAP_SECONDS = 10


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
    read of at most ``cap + 1`` entries, never the history."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS capped)"
    output_field = IntegerField()

    def __init__(self, tasks: QuerySet[ReviewTask], cap: int) -> None:
        super().__init__(tasks.order_by().values("id")[: cap + 1])


def _read_counts(parts: dict[int, QuerySet[ReviewTask]], cap: int) -> dict[int, int]:
    """The capped counts of ``parts``, read in one statement.

    One round trip instead of one per count: the card pays per statement. A statement needs a
    row to hang the subqueries off; the task model's content type row is one that always exists,
    read by primary key from a small table (the ORM writes no ``SELECT`` without ``FROM``).
    """
    if not parts:
        return {}
    anchor = ContentType.objects.get_for_model(ReviewTask).pk  # cached in the process
    row = (
        ContentType.objects.filter(pk=anchor)
        .annotate(**{f"c{i}": _CappedCount(part, cap) for i, part in parts.items()})
        .values(*(f"c{i}" for i in parts))
        .first()
    )
    if row is None:
        raise ContentType.DoesNotExist(f"No content type row {anchor} for review tasks.")
    return {i: int(row[f"c{i}"]) for i in parts}


def _cache_key(scope: QueueFilter, cap: int) -> str:
    margin = "" if scope.max_margin is None else scope.max_margin
    return (
        f"cope:queue-over-cap:{cap}:{scope.job.pk if scope.job else ''}:"
        f"{scope.policy.pk if scope.policy else ''}:{scope.side_said_1 or ''}:{margin}"
    )


def queue_counts(scope: QueueFilter, *, cap: int | None = None) -> QueueCounts:
    """Open (expired claims included), validly claimed, resolved and carried-over tasks.

    Each count reads at most ``cap + 1`` index entries (``COPE_QUEUE_COUNT_CAP``, 1,000 by
    default); a count above the cap is shown as "1000+". Open and claimed tasks are read from
    the partial indexes that hold only live work, so those counts cost what the live queue
    holds; the resolved history is counted only up to the cap.
    """
    cap = int(cap or settings.COPE_QUEUE_COUNT_CAP)
    now = timezone.now()
    tasks = scope.apply(ReviewTask.objects.all())
    parts = [
        tasks.filter(status=ReviewStatus.OPEN),
        tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__lt=now),
        tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__gte=now),
        tasks.filter(status=ReviewStatus.RESOLVED),
        tasks.filter(carried_over=True),
    ]
    # A count shown as "1000+" cannot visibly change with one decision: for a few seconds it is
    # taken as still over the cap instead of read again (each read walks cap + 1 index entries,
    # the costliest part of the card's counts). Counts under the cap are always read.
    key = _cache_key(scope, cap)
    memo = caches["local"]  # per process: see settings.CACHES
    over: set[int] = set(memo.get(key) or ())
    values = _read_counts({i: part for i, part in enumerate(parts) if i not in over}, cap)
    values.update({i: cap + 1 for i in over})
    now_over = {i for i in _MONOTONE_COUNTS if values[i] > cap}
    if now_over != over:
        memo.set(key, sorted(now_over), timeout=_OVER_CAP_SECONDS)
    open_, expired, claimed, resolved, carried = (values[i] for i in range(len(parts)))
    return QueueCounts(
        open=min(cap + 1, open_ + expired),
        claimed=claimed,
        resolved=resolved,
        carried=carried,
        cap=cap,
    )
