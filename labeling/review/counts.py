"""The queue's task counts shown over the card, each read up to a cap."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
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


def _capped_count(tasks: QuerySet[ReviewTask], cap: int) -> int:
    """``count(*)`` of the queryset, stopping after ``cap + 1`` rows: an index range read of at
    most ``cap + 1`` entries, never the history."""
    return tasks.order_by().values("id")[: cap + 1].count()


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
    over: set[int] = set(cache.get(key) or ())
    values = {i: cap + 1 if i in over else _capped_count(part, cap) for i, part in enumerate(parts)}
    now_over = {i for i in _MONOTONE_COUNTS if values[i] > cap}
    if now_over != over:
        cache.set(key, sorted(now_over), timeout=_OVER_CAP_SECONDS)
    open_, expired, claimed, resolved, carried = (values[i] for i in range(len(parts)))
    return QueueCounts(
        open=min(cap + 1, open_ + expired),
        claimed=claimed,
        resolved=resolved,
        carried=carried,
        cap=cap,
    )
