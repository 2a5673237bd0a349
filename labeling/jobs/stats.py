"""A job's figures: its agreement statistics and mismatches, its progress, and the planner's
statistics after a large job.

The agreement is computed in SQL when a job finishes: one pass over the job's labels grouped
per item (the statistics pivot), whose column names come from ``Label`` (``sql.names``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count
from django.utils import timezone

from labeling import agreement
from labeling.jobs import sql
from labeling.models import ChunkStatus, Job, JobChunk, Label, ReviewStatus, ReviewTask, Side
from policies.models import Version

log = logging.getLogger(__name__)

# When the job page offers "Resume stalled chunks" (a person decides; see ``resume_job_now``).
STALE_AFTER = timedelta(minutes=10)
# Reasons an item failed, as many as the job page lists per side.
REASONS_SHOWN = 8

# A mismatch: (item, label A, label B, p1 A, p1 B).
Mismatch = tuple[int, int, int, float | None, float | None]

# Both statements read the job's labels grouped per item: its label (and p1) under each
# wording, NULL where it has none. A grouped scan, not a self-join: with statistics taken before
# the job wrote its labels (no autoanalyze since), PostgreSQL planned the join as a nested loop
# over both sides, quadratic in the job's size (hours at 100,000 items). A grouped scan stays
# linear whatever the planner believes.
_CELLS = """
    SELECT la, lb, COUNT(*) FROM (
        SELECT {item},
               MAX(CASE WHEN {side} = %s THEN {label} END) AS la,
               MAX(CASE WHEN {side} = %s THEN {label} END) AS lb
        FROM {table} WHERE {job} = %s GROUP BY {item}
    ) AS per_item GROUP BY la, lb
"""
_MISMATCHES = """
    SELECT {item}, la, lb, pa, pb FROM (
        SELECT {item},
               MAX(CASE WHEN {side} = %s THEN {label} END) AS la,
               MAX(CASE WHEN {side} = %s THEN {label} END) AS lb,
               MAX(CASE WHEN {side} = %s THEN {p1} END) AS pa,
               MAX(CASE WHEN {side} = %s THEN {p1} END) AS pb
        FROM {table} WHERE {job} = %s GROUP BY {item}
    ) AS per_item
    WHERE la <> lb
    ORDER BY {item}
"""


def _pivot(job: Job) -> tuple[list[tuple[int | None, int | None, int]], list[Mismatch]]:
    """(count of items per (label A, label B), the mismatches), each in one statement."""
    names = sql.names(Label, "job", "item", "side", "label", "p1")
    a, b = Side.A.value, Side.B.value
    with connection.cursor() as cursor:
        cursor.execute(_CELLS.format(**names), [a, b, job.pk])
        cells = [(la, lb, int(n)) for la, lb, n in cursor.fetchall()]
        cursor.execute(_MISMATCHES.format(**names), [a, b, a, b, job.pk])
        mismatches = [(int(i), int(la), int(lb), pa, pb) for i, la, lb, pa, pb in cursor]
    return cells, mismatches


def compute_job_stats(job: Job) -> tuple[dict[str, Any], list[Mismatch]]:
    """Agreement stats of a job, and its mismatches (the review tasks to create).

    The confusion counts are grouped in the database, the mismatches found there, and the failed
    items' reasons grouped per side. Stats add ``labeled`` (items with a label, per side) and
    ``lost`` (per side: count and reasons).
    """
    cells, mismatches = _pivot(job)
    counts = {"a1b1": 0, "a1b0": 0, "a0b1": 0, "a0b0": 0}
    only_a = only_b = both = 0
    labeled = {"A": 0, "B": 0}
    seen = 0
    for la, lb, n in cells:
        seen += n
        labeled["A"] += n if la is not None else 0
        labeled["B"] += n if lb is not None else 0
        if la is None and lb is None:
            both += n
        elif la is None:
            only_a += n
        elif lb is None:
            only_b += n
        else:
            counts[f"a{1 if la else 0}b{1 if lb else 0}"] += n
    excluded = {
        agreement.EXCLUDED_A: only_a,
        agreement.EXCLUDED_B: only_b,
        agreement.EXCLUDED_BOTH: both,
    }
    result = agreement.agreement_from_confusion(agreement.Confusion(**counts), excluded)
    stats = result.to_dict()
    missing = job.item_count - seen
    if missing > 0:
        stats["excluded"]["no label under either wording"] = missing
        stats["excluded_count"] += missing
        stats["total"] += missing
    stats["labeled"] = labeled
    stats["lost"] = lost_items(job)
    return stats, mismatches


def lost_items(job: Job) -> dict[str, dict[str, Any]]:
    """Per side: how many items have no label, and the most common reasons with their counts."""
    lost: dict[str, dict[str, Any]] = {}
    failed = Label.objects.filter(job=job, label__isnull=True)
    for side in (Side.A, Side.B):
        rows = (
            failed.filter(side=side).values("error").annotate(n=Count("pk")).order_by("-n", "error")
        )
        reasons = [[r["error"] or "no reason given", r["n"]] for r in rows[: REASONS_SHOWN + 1]]
        count = failed.filter(side=side).count() if len(reasons) > REASONS_SHOWN else None
        shown = reasons[:REASONS_SHOWN]
        total = count if count is not None else sum(n for _, n in shown)
        lost[side] = {"count": total, "reasons": shown, "other": total - sum(n for _, n in shown)}
    return lost


# Tables a finished job has just added many rows to.
_ANALYZED_AFTER_JOBS = (Label, ReviewTask)


def analyze_after_job(items: int) -> bool:
    """Refresh PostgreSQL's statistics of the label and review tables after a large job.

    The planner sizes a job's rows from statistics taken before the job wrote them; where
    autovacuum's autoanalyze is off or behind, the pages that read one job (items page, gold
    figures, comparisons, the review queue) would be planned as if it had a handful of rows.
    ``ANALYZE`` reads a fixed-size sample (a fraction of a second), so it runs after every job
    of ``COPE_ANALYZE_AFTER_ITEMS`` items or more. Returns whether it ran.
    """
    if connection.vendor != "postgresql" or items < settings.COPE_ANALYZE_AFTER_ITEMS:
        return False
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {', '.join(sql.table(m) for m in _ANALYZED_AFTER_JOBS)}")
    except DatabaseError:
        log.warning("ANALYZE after a job failed; the planner keeps older statistics", exc_info=True)
        return False
    log.info("ANALYZE after a job of %s items: %.2f s", items, time.perf_counter() - started)
    return True


# Progress, for the pages -----------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    total: int
    done_a: int
    done_b: int
    errors_a: int
    errors_b: int
    items_per_s: float | None
    eta_seconds: float | None
    percent: float
    stalled: bool


def job_progress(job: Job, *, stale_after: timedelta = STALE_AFTER) -> Progress:
    """Counters for the page. The speed is items (both sides done) over the job's wall time
    from its start (``created_at``, preparation included) to its finish, or to now."""
    finished = job.done_a + job.done_b + job.errors_a + job.errors_b
    total = job.item_count * 2
    rate = eta = None
    if finished:
        end = job.finished_at or timezone.now()
        elapsed = max((end - job.created_at).total_seconds(), 1e-3)
        rate = finished / 2 / elapsed
        if job.is_active and rate > 0:
            eta = (total - finished) / 2 / rate
    stalled = (
        job.is_active
        and JobChunk.objects.filter(
            job=job,
            status=ChunkStatus.QUEUED,
            sent_at__isnull=False,
            sent_at__lte=timezone.now() - stale_after,
        ).exists()
    )
    return Progress(
        total=job.item_count,
        done_a=job.done_a,
        done_b=job.done_b,
        errors_a=job.errors_a,
        errors_b=job.errors_b,
        items_per_s=rate,
        eta_seconds=eta,
        percent=100.0 * finished / total if total else 0.0,
        stalled=stalled,
    )


def open_reviews_by_version(versions: Iterable[Version]) -> dict[int, int]:
    """Review tasks of each version's jobs not decided yet (open, claimed, or awaiting
    adjudication), by version id (one query)."""
    ids = [v.pk for v in versions]
    waiting = [ReviewStatus.OPEN, ReviewStatus.CLAIMED, ReviewStatus.ADJUDICATE]
    rows = (
        ReviewTask.objects.filter(job__version_id__in=ids, status__in=waiting)
        .values("job__version_id")
        .annotate(n=Count("pk"))
    )
    return {r["job__version_id"]: r["n"] for r in rows}
