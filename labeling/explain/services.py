"""What a person, a finished job or beat does to explain runs: start, more, cancel, resume.

A run is created with its chunks in one transaction (the items are a job's mismatches, first
by item id, then, when asked, its other items), and its first chunks go out once committed.
Lost chunks are told from slow ones by asking the broker (``broker.look``) and sent again by
the jobs' beat task (``labeling.tasks.resume_stalled_jobs`` calls ``resume_stalled_runs``); a
chunk sent ``COPE_MAX_CHUNK_ATTEMPTS`` times while a model worker was there is given up.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from labeling.explain import broker
from labeling.explain.dispatch import (
    ACTIVE,
    claim_next_chunks,
    create_run,
    fill_window,
    give_up_on_chunks,
    job_variants,
    lock_run,
    next_attempt,
    send_chunks,
)
from labeling.explain.record import maybe_finish_run
from labeling.models import (
    ChunkStatus,
    ExplainChunk,
    ExplainItem,
    ExplainRun,
    ExplainStatus,
    Job,
    JobStatus,
    ReviewTask,
    RunKind,
)
from worker.variants import distinct

log = logging.getLogger(__name__)

# Scores (variants x items) per chunk: a few thousand keeps a chunk well inside the task time
# limit on the CPU baseline and a GPU (see ``worker.contract``'s sizing note).
SCORES_PER_CHUNK = 4000


class ExplainError(Exception):
    """A run that cannot start; the message is for the person who asked."""


# The jobs' settings for lost chunks (``labeling.jobs.services``), read here so that the jobs'
# finishing code can import this module without a cycle.
def max_chunk_attempts() -> int:
    return int(settings.COPE_MAX_CHUNK_ATTEMPTS)


def resume_after() -> timedelta:
    return timedelta(seconds=settings.COPE_RESUME_AFTER_SECONDS)


def resend_grace() -> timedelta:
    return timedelta(seconds=settings.COPE_RESEND_GRACE_SECONDS)


def explain_max_items() -> int:
    return int(settings.COPE_EXPLAIN_MAX_ITEMS)


def mismatch_ids(job: Job) -> list[int]:
    """The job's mismatches by item id: its review tasks, which the job's finish opened for
    exactly the items whose two labels differ (one definition; an index range read, not a
    grouping of every label)."""
    return list(
        ReviewTask.objects.filter(job=job).order_by("item_id").values_list("item_id", flat=True)
    )


def unexplained_mismatches(job: Job) -> list[int]:
    """Mismatches no run has explained yet and none is explaining (failed ones count as not
    explained)."""
    done = set(
        ExplainItem.objects.filter(job=job)
        .exclude(verdict="failed")
        .values_list("item_id", flat=True)
    )
    pending = {
        i
        for ids in ExplainChunk.objects.filter(
            run__job=job,
            run__kind=RunKind.ATTRIBUTION,
            run__status__in=ACTIVE,
            status=ChunkStatus.QUEUED,
        ).values_list("item_ids", flat=True)
        for i in ids
    }
    return [i for i in mismatch_ids(job) if i not in done and i not in pending]


def start_explain(
    job: Job, by: Any | None, max_items: int | None = None, item_ids: list[int] | None = None
) -> ExplainRun:
    """Start a run over up to ``max_items`` (default ``COPE_EXPLAIN_MAX_ITEMS``) of ``item_ids``
    (default: the job's mismatches not yet explained). ``by`` None: started automatically.
    Raises ``ExplainError`` when the job cannot be explained or nothing is left."""
    if job.status not in (JobStatus.SUCCEEDED, JobStatus.PARTIAL):
        raise ExplainError("Only a finished job can be explained.")
    limit = explain_max_items() if max_items is None else max_items
    items = (unexplained_mismatches(job) if item_ids is None else item_ids)[: max(0, limit)]
    if not items:
        raise ExplainError("Every mismatch of this job is explained (or being explained).")
    variants = distinct(job_variants(job.text_a, job.text_b))
    size = max(1, SCORES_PER_CHUNK // max(1, len(variants)))
    with transaction.atomic():
        Job.objects.select_for_update().filter(pk=job.pk).values("pk").first()  # serialise runs
        return create_run(
            chunks=[(items[i : i + size], None) for i in range(0, len(items), size)],
            kind=RunKind.ATTRIBUTION,
            job=job,
            attempt=next_attempt(job=job, kind=RunKind.ATTRIBUTION),
            requested_by=by,
            variants=len(variants),
            chunk_size=size,
        )


def explain_after_job(job_id: int) -> ExplainRun | None:
    """Called once a job has finished: a succeeded job with mismatches gets a run over up to
    ``COPE_EXPLAIN_MAX_ITEMS`` of them, started by no one. Anything else (another status, no
    mismatch, a run already there) starts nothing. Never raises for an ordinary job."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != JobStatus.SUCCEEDED or explain_max_items() <= 0:
        return None
    if ExplainRun.objects.filter(job=job, kind=RunKind.ATTRIBUTION).exists():
        return None
    try:
        return start_explain(job, None)
    except ExplainError:
        return None


def explain_more(job: Job, by: Any) -> ExplainRun:
    """ "Explain more": a run over the next ``COPE_EXPLAIN_MAX_ITEMS`` mismatches not explained
    yet (failed ones again). Raises ``ExplainError`` while a run is active or none is left."""
    if ExplainRun.objects.filter(job=job, kind=RunKind.ATTRIBUTION, status__in=ACTIVE).exists():
        raise ExplainError("A run is still explaining this job's mismatches; wait or cancel it.")
    return start_explain(job, by)


def cancel_explain(run: ExplainRun) -> bool:
    """Cancel an active run: unsent chunks are never sent, late results are ignored; what was
    recorded stays. Returns whether this call cancelled it."""
    return bool(
        ExplainRun.objects.filter(pk=run.pk, status__in=ACTIVE).update(
            status=ExplainStatus.CANCELLED, finished_at=timezone.now()
        )
    )


# Lost chunks --------------------------------------------------------------------------------

# (chunk, run, job, items, sent_at, attempts)
InFlight = tuple[int, int, int, list[int], datetime, int]


def _in_flight() -> list[InFlight]:
    rows = (
        ExplainChunk.objects.filter(
            status=ChunkStatus.QUEUED, sent_at__isnull=False, run__status__in=ACTIVE
        )
        .order_by("run_id", "index")
        .values_list("pk", "run_id", "run__job_id", "item_ids", "sent_at", "attempts")
    )
    return [(pk, r, j, ids, at, n) for pk, r, j, ids, at, n in rows if at is not None]


def lost_chunks() -> tuple[list[InFlight], bool]:
    """Chunks in flight that no queue and no model worker has, sent more than
    ``COPE_RESEND_GRACE_SECONDS`` ago (``COPE_RESUME_AFTER_SECONDS`` where the workers cannot
    be asked); and whether a model worker is known or might be alive."""
    in_flight = _in_flight()
    if not in_flight:
        return [], True
    view = broker.look()
    now = timezone.now()
    grace = resend_grace()
    lost = []
    for chunk in in_flight:
        pk, sent_at = chunk[0], chunk[4]
        if sent_at > now - grace or (view.queued is not None and pk in view.queued):
            continue
        if view.held is not None:
            if pk in view.held:
                continue
        elif sent_at > now - max(grace, resume_after()):
            continue
        lost.append(chunk)
    return lost, view.model_workers != 0


def resend(lost: list[InFlight], *, count: bool) -> int:
    """Send lost chunks again; with ``count`` (a model worker was there to lose them) the send
    counts towards ``COPE_MAX_CHUNK_ATTEMPTS`` and a chunk at the cap is given up instead."""
    cap = max_chunk_attempts()
    by_run: dict[int, list[InFlight]] = {}
    for chunk in lost:
        by_run.setdefault(chunk[1], []).append(chunk)
    resent = 0
    for run_id, chunks in by_run.items():
        with transaction.atomic():
            run = lock_run(run_id)
            if run is None or run[0] not in ACTIVE:
                continue
            still = set(
                ExplainChunk.objects.filter(
                    pk__in=[c[0] for c in chunks], status=ChunkStatus.QUEUED
                ).values_list("pk", flat=True)
            )
            live = [c for c in chunks if c[0] in still]
            spent = [(c[0], c[3]) for c in live if count and c[5] >= cap]
            again = [c[0] for c in live if not (count and c[5] >= cap)]
            if spent:
                concludes = run[1] if run[2] == RunKind.ATTRIBUTION else None
                give_up_on_chunks(run_id, concludes, spent, cap)
            if again:
                ExplainChunk.objects.filter(pk__in=again).update(
                    sent_at=timezone.now(),
                    attempts=F("attempts") + 1 if count else F("attempts"),
                )
                transaction.on_commit(partial(send_chunks, run_id, again))
            resent += len(again)
            if spent and not claim_next_chunks(run_id):
                maybe_finish_run(run_id)
    return resent


def resume_stalled_runs() -> dict[int, int]:
    """Run by the jobs' beat task: re-send lost chunks of every active run and fill every
    run's window. Returns ``{run id: chunks re-sent}`` for runs that had any."""
    lost, worker_alive = lost_chunks()
    resent: dict[int, int] = {}
    for chunk in lost:
        resent[chunk[1]] = resent.get(chunk[1], 0) + 1
    resend(lost, count=worker_alive)
    for run_id in ExplainRun.objects.filter(status__in=ACTIVE).values_list("pk", flat=True):
        fill_window(run_id)
    return resent
