"""Labeling jobs: start, prepare, send, record results, finish, cancel, resume and retry.

The ``Job`` row is the truth the UI reads. Starting a job only creates that row (texts read from
the locked version row); ``labeling.prepare_job`` on ``default`` samples the items and creates
the chunks. Chunks go to the model workers by task name on the ``gpu`` queue, at most
``COPE_CHUNKS_IN_FLIGHT`` per job at a time (flow control): each result sends the job's next
chunk, so the broker holds a few messages per job whatever its size, and jobs running together
share the workers (each job's next chunk joins the back of the queue). Results come back as
``labeling.record_chunk`` tasks on ``default`` and are written here idempotently: labels are
upserted on (job, item, side), a chunk moves queued → done/failed with a conditional UPDATE,
and only the delivery that moved it counts.

Outcomes are honest: a job ends **succeeded** only when every item has a label under both
wordings, **partial** when some items failed (the page says how many per side and why), and
**failed** when none was labeled. Only a succeeded job is a version's latest finished job.

Every writer of a job's chunk statuses (recording a result, finishing, sending, retrying,
giving up on a chunk) first locks the job row (``select_for_update``), so "no chunk is queued
any more" cannot change between the check and the finish. SQLite has no row locks, but its
IMMEDIATE transactions (see settings) serialise writers, which gives the same order.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, Count, DateTimeField, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from cope_studio.lib.db import table, update_returning
from labeling import agreement
from labeling.jobs.comparisons import side_b
from labeling.models import (
    ChunkStatus,
    Item,
    Job,
    JobChunk,
    JobStatus,
    Label,
    ReviewStatus,
    ReviewTask,
    SampleSet,
    Side,
)
from labeling.review.services import carry_over_decisions
from policies.models import Version
from worker.contract import (
    GPU_QUEUE,
    SCORE_CHUNK_TASK,
    ScoreItem,
    ScoreRequest,
    ScoreResult,
)

log = logging.getLogger(__name__)

# When the job page offers "Resume stalled chunks" (a person decides; see ``resume_job_now``).
STALE_AFTER = timedelta(minutes=10)
# What the button re-sends: chunks in flight not heard of for a minute.
MANUAL_STALE_AFTER = timedelta(minutes=1)
WEAK_NOTE = "labels from the embedding baseline, a weak classifier, not CoPE"
PREPARE_JOB_TASK = "labeling.prepare_job"
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED)
# Reasons an item failed, as many as the job page lists per side.
REASONS_SHOWN = 8


# A job that decided a finalize is frozen; retries are refused with this message.
FROZEN_MESSAGE = (
    "Job #{job} decided the finalizing of its version and is frozen: its labels, statistics "
    "and review tasks no longer change. Start a new job (on a new version) instead."
)


class JobError(ValueError):
    """A job cannot be started or changed; the message is shown to the user."""


def send_score_request(request: dict[str, Any]) -> None:
    """Hand one chunk to the GPU workers (tests replace this to capture requests)."""
    from cope_studio.celery import app

    app.send_task(SCORE_CHUNK_TASK, args=[request], queue=GPU_QUEUE)


def send_prepare_job(job_id: int) -> None:
    """Queue ``prepare_job`` on ``default`` (tests replace this to run it inline)."""
    from cope_studio.celery import app

    app.send_task(PREPARE_JOB_TASK, args=[job_id], queue="default")


def max_chunk_attempts() -> int:
    return int(settings.COPE_MAX_CHUNK_ATTEMPTS)


def resume_after() -> timedelta:
    return timedelta(seconds=settings.COPE_RESUME_AFTER_SECONDS)


def resend_grace() -> timedelta:
    return timedelta(seconds=settings.COPE_RESEND_GRACE_SECONDS)


def chunks_in_flight() -> int:
    return int(settings.COPE_CHUNKS_IN_FLIGHT)


# Web-side seconds spent on a job after its last counters update (sending chunks after a
# commit, finishing), added to ``bookkeeping_seconds`` by the job's next update in this process
# rather than by an UPDATE and a commit of their own for each chunk.
_unrecorded: dict[int, float] = {}


def _add_bookkeeping(job_id: int, started: float) -> None:
    _unrecorded[job_id] = _unrecorded.get(job_id, 0.0) + time.perf_counter() - started


def _take_bookkeeping(job_id: int, started: float) -> float:
    return _unrecorded.pop(job_id, 0.0) + time.perf_counter() - started


# Starting and preparing ---------------------------------------------------------------------


def start_job(
    *,
    version: Version,
    sample_set: SampleSet,
    sample_size: int | None,
    by: Any,
    seed: int | None = None,
    chunk_size: int | None = None,
    compare_version: Version | None = None,
    compare_text: str | None = None,
) -> Job:
    """Create a binocular job and return at once; ``prepare_job`` samples and sends it.

    The version row is locked and both texts are read from the locked row, so a twin saved at
    the same moment is either in this job entirely or not at all. ``sample_size`` picks a
    random sample of that many items (seeded, in file order); ``None`` or a size at least the
    set's labels every item. Side B is the version's twin, or ``compare_version``'s text, or
    ``compare_text`` (see ``labeling.comparisons``).
    """
    if sample_size is not None and sample_size < 1:
        raise JobError("The sample size must be at least 1.")
    if not sample_set.is_ready:  # a set still importing, or failed, has no items yet
        raise JobError(
            f"The sample set “{sample_set.name}” is not ready ({sample_set.get_status_display()})."
        )
    if sample_set.item_count < 1:
        raise JobError("This sample set has no items.")
    size = int(chunk_size or settings.COPE_CHUNK_SIZE)
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    sampled = sample_size is not None and sample_size < sample_set.item_count
    with transaction.atomic():
        texts = Version.objects.select_for_update().filter(pk=version.pk)
        locked = texts.values("text", "twin_text").first()
        if locked is None:
            raise JobError("This version no longer exists.")
        version.text, version.twin_text = locked["text"], locked["twin_text"]
        compare_kind, text_b = side_b(
            version=version, compare_version=compare_version, compare_text=compare_text
        )
        job = Job.objects.create(
            version=version,
            sample_set=sample_set,
            text_a=version.text,
            text_b=text_b,
            compare_kind=compare_kind,
            compare_version=compare_version,
            sample_size=sample_size if sampled else None,
            sample_seed=seed if sample_size else None,
            item_count=sample_size if sampled and sample_size else sample_set.item_count,
            chunk_size=size,
            created_by=by,
        )
        job_id = job.pk
        transaction.on_commit(lambda: send_prepare_job(job_id))
    return job


def _sample_item_ids(sample_set_id: int, sample_size: int | None, seed: int | None) -> list[int]:
    ids = list(
        Item.objects.filter(sample_set_id=sample_set_id)
        .order_by("row_number")
        .values_list("pk", flat=True)
    )
    if sample_size and sample_size < len(ids):
        chosen = set(random.Random(seed).sample(ids, sample_size))
        ids = [i for i in ids if i in chosen]  # keep file order
    return ids


def prepare_job(job_id: int) -> bool:
    """Sample a started job's items, create its chunks and send the first ones (idempotent:
    a job already prepared, cancelled or gone is left alone). Returns whether it prepared."""
    started = time.perf_counter()
    job = (
        Job.objects.filter(pk=job_id)
        .values("status", "prepared_at", "sample_set_id", "sample_size", "sample_seed")
        .first()
    )
    if job is None or job["status"] != JobStatus.QUEUED or job["prepared_at"] is not None:
        return False
    item_ids = _sample_item_ids(job["sample_set_id"], job["sample_size"], job["sample_seed"])
    with transaction.atomic():
        row = Job.objects.select_for_update().filter(pk=job_id)
        current = row.values("status", "prepared_at", "chunk_size").first()
        if current is None or current["status"] != JobStatus.QUEUED or current["prepared_at"]:
            return False
        now = timezone.now()
        if not item_ids:
            row.update(
                status=JobStatus.FAILED,
                prepared_at=now,
                finished_at=now,
                item_count=0,
                error="This sample set has no items.",
            )
            return True
        size = current["chunk_size"]
        slices = [item_ids[i : i + size] for i in range(0, len(item_ids), size)]
        JobChunk.objects.bulk_create(
            [
                JobChunk(job_id=job_id, side=side, index=index, item_ids=ids)
                for index, ids in enumerate(slices)
                for side in (Side.A, Side.B)
            ],
            batch_size=2000,
        )
        _claim_next_chunks(job_id)
        row.update(
            item_count=len(item_ids),
            chunk_count=len(slices),
            prepared_at=now,
            bookkeeping_seconds=F("bookkeeping_seconds") + _take_bookkeeping(job_id, started),
        )
    return True


# Sending (flow control) ---------------------------------------------------------------------


def _claim_next_chunks(job_id: int) -> int:
    """Mark the job's next unsent chunks sent, up to ``COPE_CHUNKS_IN_FLIGHT`` in flight, and
    send them once committed. The caller holds the job row's lock. Returns how many.

    One ``UPDATE … RETURNING`` picks them (the window's free places and the next unsent
    chunks to fill them) and hands back what sending needs, so the send reads no chunk again.
    A database without ``UPDATE … RETURNING`` (SQLite before 3.35) picks, then marks.
    """
    chunks = table(JobChunk)
    window = chunks_in_flight()
    pick = f"""
        SELECT id FROM {chunks}
        WHERE job_id = %s AND status = %s AND sent_at IS NULL
        ORDER BY "index", side
        LIMIT (SELECT CASE WHEN COUNT(*) < %s THEN %s - COUNT(*) ELSE 0 END FROM {chunks}
               WHERE job_id = %s AND status = %s AND sent_at IS NOT NULL)
    """
    pick_params: list[Any] = [
        job_id,
        ChunkStatus.QUEUED,
        window,
        window,
        job_id,
        ChunkStatus.QUEUED,
    ]
    now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the ORM writes it
    if not update_returning():
        with connection.cursor() as cursor:
            cursor.execute(pick, pick_params)
            ids = [int(row[0]) for row in cursor.fetchall()]
        if ids:
            JobChunk.objects.filter(pk__in=ids).update(
                sent_at=timezone.now(), attempts=F("attempts") + 1
            )
            transaction.on_commit(lambda: _send_chunks(job_id, ids))
        return len(ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {chunks} SET sent_at = %s, attempts = attempts + 1 WHERE id IN ({pick}) "
            'RETURNING id, "index", side, item_ids, attempts',
            [now, *pick_params],
        )
        rows = cursor.fetchall()
    if rows:
        picked = [
            # jsonb comes back decoded (psycopg), SQLite's JSON as text.
            (int(pk), str(side), ids if isinstance(ids, list) else json.loads(ids), int(attempts))
            for pk, _index, side, ids, attempts in sorted(rows, key=lambda r: (r[1], r[2]))
        ]
        transaction.on_commit(lambda: _send_chunks(job_id, [pk for pk, *_ in picked], picked))
    return len(rows)


def fill_window(job_id: int) -> int:
    """Send an active job's next chunks if fewer than ``COPE_CHUNKS_IN_FLIGHT`` are out."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).values("status").first()
        if job is None or job["status"] not in ACTIVE:
            return 0
        return _claim_next_chunks(job_id)


def _send_chunks(
    job_id: int,
    chunk_ids: list[int],
    chunks: list[tuple[int, str, list[int], int]] | None = None,
) -> int:
    """Send chunks already marked sent (``sent_at``, ``attempts``) with their texts: one query
    for the policy texts the chunks' sides need, one for the chunks (unless ``chunks`` gives
    them, as (id, side, item ids, attempts)), one for their items. A broker that refuses is
    logged, not raised: the chunks look lost to the periodic resume, which sends them again.
    Returns how many went."""
    started = time.perf_counter()
    if chunks is None:
        chunks = list(
            JobChunk.objects.filter(pk__in=chunk_ids, status=ChunkStatus.QUEUED)
            .order_by("index", "side")
            .values_list("pk", "side", "item_ids", "attempts")
        )
    sides = {side for _, side, _, _ in chunks}
    # Only the texts sent: a policy can be tens of kilobytes, and a chunk carries one side.
    columns = [f"text_{side.lower()}" for side in sorted(sides)]
    row = Job.objects.filter(pk=job_id).values_list(*columns).first() if columns else None
    if row is None:
        return 0
    policy_text = dict(zip(sorted(sides), row, strict=True))
    wanted = {i for _, _, ids, _ in chunks for i in ids}
    # order_by(): Item's default ordering would join the sample set for nothing.
    item_texts = dict(Item.objects.filter(pk__in=wanted).order_by().values_list("pk", "text"))
    sent = 0
    try:
        for pk, side, item_ids, attempts in chunks:
            request = ScoreRequest(
                job_id=job_id,
                chunk_id=pk,
                side=side,
                policy=policy_text[side],
                items=[ScoreItem(i, item_texts[i]) for i in item_ids if i in item_texts],
                attempt=max(1, attempts),  # the worker gives up on a chunk that kills it
            )
            send_score_request(request.to_dict())
            sent += 1
    except Exception:
        log.warning(
            "job %s: the broker refused chunks; they will be re-sent", job_id, exc_info=True
        )
    _add_bookkeeping(job_id, started)
    return sent


def _give_up_on_chunks(job_id: int, chunks: list[tuple[int, str, list[int]]], cap: int) -> None:
    """Fail queued chunks that were sent ``cap`` times without an answer (job row locked)."""
    error = (
        f"Sent to the workers {cap} times without an answer (COPE_MAX_CHUNK_ATTEMPTS={cap}). "
        "A worker may be dying on it (out of memory, a CUDA error). Check the model worker's "
        "log, then retry the failed items."
    )
    # The caller read these chunks as queued under the job's lock: all of them move.
    JobChunk.objects.filter(pk__in=[pk for pk, _, _ in chunks], status=ChunkStatus.QUEUED).update(
        status=ChunkStatus.FAILED, finished_at=timezone.now(), error=error
    )
    counters: dict[str, Any] = {"failed_chunks": F("failed_chunks") + len(chunks)}
    labels = []
    for _, side, item_ids in chunks:
        errors = f"errors_{side.lower()}"
        counters[errors] = counters.get(errors, F(errors)) + len(item_ids)
        labels += [Label(job_id=job_id, item_id=i, side=side, error=error) for i in item_ids]
    Label.objects.bulk_create(
        labels,
        update_conflicts=True,
        unique_fields=["job", "item", "side"],
        update_fields=["label", "p1", "error"],
        batch_size=2000,
    )
    Job.objects.filter(pk=job_id).update(**counters)


# Recording results --------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordOutcome:
    """What ``record_chunk_result`` did, for logs and tests."""

    action: str  # "recorded", "failed", "duplicate", "ignored"
    finished: bool = False


def _upsert_labels(
    job_id: int,
    side: str,
    outcomes: dict[int, tuple[int | None, float | None, str]],
    now: Any,
) -> None:
    """Insert or overwrite one chunk's labels on the (job, item, side) key.

    On PostgreSQL one ``INSERT … SELECT unnest(…) ON CONFLICT`` statement: building a model
    instance per label was most of a chunk's bookkeeping time.
    """
    if connection.vendor != "postgresql":
        Label.objects.bulk_create(
            [
                Label(job_id=job_id, item_id=i, side=side, label=lab, p1=p1, error=err)
                for i, (lab, p1, err) in outcomes.items()
            ],
            update_conflicts=True,
            unique_fields=["job", "item", "side"],
            update_fields=["label", "p1", "error"],
            batch_size=2000,
        )
        return
    items, labels, p1s, errors = [], [], [], []
    for item_id, (label, p1, error) in outcomes.items():
        items.append(item_id)
        labels.append(label)
        p1s.append(p1)
        errors.append(error)
    table = Label._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (job_id, item_id, side, label, p1, error, created_at)
            SELECT %s, t.item_id, %s, t.label, t.p1, t.error, %s
            FROM unnest(%s::bigint[], %s::smallint[], %s::double precision[], %s::text[])
                AS t(item_id, label, p1, error)
            ON CONFLICT (job_id, item_id, side)
            DO UPDATE SET label = EXCLUDED.label, p1 = EXCLUDED.p1, error = EXCLUDED.error
            """,
            [job_id, side, now, items, labels, p1s, errors],
        )


def record_chunk_result(result: ScoreResult) -> RecordOutcome:
    """Write one chunk's result, idempotently, and send the job's next chunk.

    A success moves a queued chunk to done, and also a failed one: when a re-sent chunk's copies
    disagree (one worker died or erred, another scored it) the labels win, whichever arrives
    first; a job that already finished with that failure is reopened and finished again. A
    failure only moves a queued chunk: it never replaces labels. A redelivered success for a done
    chunk, or any result for a chunk whose items were retried in new chunks, changes nothing.
    """
    started = time.perf_counter()
    now = timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_for_update()
            .filter(pk=result.job_id)
            .values("status", "backend", "frozen_at")
            .first()
        )
        if job is None or job["status"] == JobStatus.CANCELLED:
            return RecordOutcome("ignored")  # cancelled or deleted
        if job["frozen_at"] is not None:
            return RecordOutcome("ignored")  # decided a finalize: frozen for good
        chunk = (
            JobChunk.objects.filter(pk=result.chunk_id, job_id=result.job_id)
            .values("side", "item_ids", "status")
            .first()
        )
        if chunk is None:
            return RecordOutcome("ignored")
        was = chunk["status"]
        if was in (ChunkStatus.DONE, ChunkStatus.RETRIED) or (
            result.error and was != ChunkStatus.QUEUED
        ):
            return RecordOutcome("duplicate")
        active = job["status"] in ACTIVE
        if not active and was != ChunkStatus.FAILED:
            return RecordOutcome("ignored")  # cannot happen: a finished job has no queued chunk
        side = chunk["side"]
        item_ids: list[int] = chunk["item_ids"]

        if result.error:
            JobChunk.objects.filter(pk=result.chunk_id, status=was).update(
                status=ChunkStatus.FAILED,
                finished_at=now,
                error=result.error[:5000],
                model_seconds=result.model_seconds,
            )
            outcomes: dict[int, tuple[int | None, float | None, str]] = {
                i: (None, None, result.error[:2000]) for i in item_ids
            }
            done, errors, failed = 0, len(item_ids), 1
        else:
            JobChunk.objects.filter(pk=result.chunk_id, status=was).update(
                status=ChunkStatus.DONE,
                finished_at=now,
                model_seconds=result.model_seconds,
                error="",
            )
            wanted = set(item_ids)
            outcomes = {
                o.item_id: (o.label, o.p1, o.error[:2000])
                for o in result.outcomes
                if o.item_id in wanted  # a worker cannot write labels outside its chunk
            }
            for i in item_ids:
                if i not in outcomes:
                    outcomes[i] = (None, None, "no result for this item from the worker")
                elif outcomes[i][0] is None and not outcomes[i][2]:
                    outcomes[i] = (None, None, "the worker returned no label")
            errors = sum(1 for label, _, _ in outcomes.values() if label is None)
            done, failed = len(item_ids) - errors, 0
            if was == ChunkStatus.FAILED:
                # Take back what the failure counted: every item an error, one failed chunk.
                errors -= len(item_ids)
                failed = -1
        _upsert_labels(result.job_id, side, outcomes, now)
        worker = result.worker
        counters: dict[str, Any] = {
            f"done_{side.lower()}": F(f"done_{side.lower()}") + done,
            f"errors_{side.lower()}": F(f"errors_{side.lower()}") + errors,
            "failed_chunks": F("failed_chunks") + failed,
            "model_seconds": F("model_seconds") + result.model_seconds,
            "status": Case(
                When(status=JobStatus.QUEUED, then=Value(JobStatus.RUNNING)),
                default=F("status"),
            ),
            "started_at": Coalesce(F("started_at"), Value(now, output_field=DateTimeField())),
        }
        if not active:
            # Finished with this chunk failed: reopen, so that the finish below recomputes the
            # agreement with its labels and adds review tasks for its mismatches.
            counters.update(status=JobStatus.RUNNING, finished_at=None, error="", stats={})
        if not job["backend"] and worker.backend:
            counters.update(
                backend=worker.backend[:40],
                model_id=worker.model_id[:500],
                model_revision=worker.model_revision[:100],
                device=worker.device[:100],
                weak_backend=worker.weak or worker.backend == "embedding",
            )
        sent_more = _claim_next_chunks(result.job_id)
        counters["bookkeeping_seconds"] = F("bookkeeping_seconds") + _take_bookkeeping(
            result.job_id, started
        )
        Job.objects.filter(pk=result.job_id).update(**counters)
        status_now = (
            JobStatus.RUNNING
            if not active or job["status"] == JobStatus.QUEUED
            else str(job["status"])
        )
        # Chunks just sent are queued: the job cannot finish yet, nothing to count.
        finished = not sent_more and maybe_finish_job(result.job_id, locked_status=status_now)
    return RecordOutcome("failed" if result.error else "recorded", finished=finished)


# Finishing ----------------------------------------------------------------------------------


def maybe_finish_job(job_id: int, *, locked_status: str | None = None) -> bool:
    """Finish the job when no chunk is queued: succeeded if every item has a label under both
    wordings, partial if some do, failed if none does.

    The job row is locked before the chunks are counted, so a retry cannot put a chunk back in
    the queue between the count and the finish (it waits for the lock, then reopens the job).
    """
    started = time.perf_counter()
    # No savepoint: inside ``record_chunk_result`` a failure here rolls the whole result back.
    with transaction.atomic(savepoint=False):
        if locked_status is not None:
            # The caller holds the job row's lock and has read it (not frozen) in this
            # transaction: its status is known.
            if locked_status != JobStatus.RUNNING:
                return False
        else:
            status = (
                Job.objects.select_for_update()
                .filter(pk=job_id)
                .values("status", "frozen_at")
                .first()
            )
            if status is None or status["status"] != JobStatus.RUNNING:
                return False
            if status["frozen_at"] is not None:
                return False  # a frozen job's stats and review tasks never change
        if JobChunk.objects.filter(job_id=job_id, status=ChunkStatus.QUEUED).exists():
            return False
        job = Job.objects.select_related("version").get(pk=job_id)
        transaction.on_commit(lambda: analyze_after_job(job.item_count))
        stats, mismatches = compute_job_stats(job)
        labeled = stats["labeled"]
        if labeled["A"] == labeled["B"] == job.item_count:
            final, error = JobStatus.SUCCEEDED, ""
        elif labeled["A"] + labeled["B"] == 0:
            final, error = JobStatus.FAILED, "No item got a label; see the reasons below."
        else:
            final = JobStatus.PARTIAL
            error = (
                f"{job.item_count - labeled['A']:,} items failed under A and "
                f"{job.item_count - labeled['B']:,} under B; see the reasons below. "
                "Agreement counts only items labeled under both wordings."
            )
        ReviewTask.objects.bulk_create(
            [
                ReviewTask(
                    job_id=job_id,
                    item_id=item_id,
                    policy_id=job.version.policy_id,
                    label_a=la,
                    label_b=lb,
                    p1_a=pa if pa is not None else float(la),
                    p1_b=pb if pb is not None else float(lb),
                )
                for item_id, la, lb, pa, pb in mismatches
            ],
            ignore_conflicts=True,
            batch_size=2000,
        )
        carry_over_decisions(job_id=job_id)  # reruns do not ask twice
        Job.objects.filter(pk=job_id).update(
            status=final,
            finished_at=timezone.now(),
            stats=stats,
            error=error,
            bookkeeping_seconds=F("bookkeeping_seconds") + _take_bookkeeping(job_id, started),
        )
    return True


# Tables a finished job has just added many rows to.
_ANALYZED_AFTER_JOBS = ("labeling_label", "labeling_reviewtask")


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
            cursor.execute(f"ANALYZE {', '.join(_ANALYZED_AFTER_JOBS)}")
    except DatabaseError:
        log.warning("ANALYZE after a job failed; the planner keeps older statistics", exc_info=True)
        return False
    log.info("ANALYZE after a job of %s items: %.2f s", items, time.perf_counter() - started)
    return True


def compute_job_stats(
    job: Job,
) -> tuple[dict[str, Any], list[tuple[int, int, int, float | None, float | None]]]:
    """Agreement stats of a job, and its mismatches as (item, label A, label B, p1 A, p1 B).

    Computed in SQL: the confusion counts grouped in the database, the mismatches (the review
    tasks to create) joined there, and the failed items' reasons grouped per side. Stats add
    ``labeled`` (items with a label, per side) and ``lost`` (per side: count and reasons).
    """
    table = Label._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT la, lb, COUNT(*) FROM (
                SELECT item_id,
                       MAX(CASE WHEN side = 'A' THEN label END) AS la,
                       MAX(CASE WHEN side = 'B' THEN label END) AS lb
                FROM {table} WHERE job_id = %s GROUP BY item_id
            ) AS per_item GROUP BY la, lb
            """,
            [job.pk],
        )
        cells = cursor.fetchall()
        # One pass over the job's labels grouped per item, not a self-join: with statistics
        # taken before the job wrote its labels (no autoanalyze since), PostgreSQL planned the
        # join as a nested loop over both sides, quadratic in the job's size (hours at 100,000
        # items). A grouped scan stays linear whatever the planner believes.
        cursor.execute(
            f"""
            SELECT item_id, la, lb, pa, pb FROM (
                SELECT item_id,
                       MAX(CASE WHEN side = 'A' THEN label END) AS la,
                       MAX(CASE WHEN side = 'B' THEN label END) AS lb,
                       MAX(CASE WHEN side = 'A' THEN p1 END) AS pa,
                       MAX(CASE WHEN side = 'B' THEN p1 END) AS pb
                FROM {table} WHERE job_id = %s GROUP BY item_id
            ) AS per_item
            WHERE la <> lb
            ORDER BY item_id
            """,
            [job.pk],
        )
        mismatches = [(int(i), int(la), int(lb), pa, pb) for i, la, lb, pa, pb in cursor]
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
    confusion = agreement.Confusion(**counts)
    result = agreement.agreement_from_confusion(
        confusion,
        {
            agreement.EXCLUDED_A: only_a,
            agreement.EXCLUDED_B: only_b,
            agreement.EXCLUDED_BOTH: both,
        },
    )
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


def cancel_job(job: Job) -> bool:
    """Cancel an active job: its unsent chunks are never sent, and results of the few in flight
    are ignored. Returns whether this call cancelled it."""
    return bool(
        Job.objects.filter(pk=job.pk, status__in=ACTIVE).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
    )


# Lost chunks, resume and retry --------------------------------------------------------------


def _in_flight(job_ids: list[int] | None = None) -> list[tuple[int, int, str, list[int], Any, int]]:
    """(chunk, job, side, items, sent_at, attempts) of chunks sent and not answered."""
    chunks = JobChunk.objects.filter(
        status=ChunkStatus.QUEUED, sent_at__isnull=False, job__status__in=ACTIVE
    )
    if job_ids is not None:
        chunks = chunks.filter(job_id__in=job_ids)
    return list(
        chunks.order_by("job_id", "index", "side").values_list(
            "pk", "job_id", "side", "item_ids", "sent_at", "attempts"
        )
    )


def lost_chunks(
    *, job_ids: list[int] | None = None, grace: timedelta | None = None
) -> tuple[list[tuple[int, int, str, list[int], Any, int]], bool]:
    """Chunks in flight that no one has: not in the ``gpu`` queue, no result waiting in
    ``default``, not held by any model worker, and sent more than ``grace``
    (``COPE_RESEND_GRACE_SECONDS``) ago. Where the broker cannot say what the workers hold, a
    chunk is lost only after ``COPE_RESUME_AFTER_SECONDS`` (above the task time limit).

    Returns (lost chunks, whether a model worker is known to be alive or might be).
    """
    from labeling.jobs import broker

    view = broker.look()
    now = timezone.now()
    grace = resend_grace() if grace is None else grace
    lost = []
    for chunk in _in_flight(job_ids):
        pk, sent_at = chunk[0], chunk[4]
        if sent_at > now - grace:
            continue
        if view.queued is not None and pk in view.queued:
            continue
        if view.held is not None:
            if pk in view.held:
                continue
        elif sent_at > now - max(grace, resume_after()):
            continue
        lost.append(chunk)
    return lost, view.model_workers != 0


def _resend(lost: list[tuple[int, int, str, list[int], Any, int]], *, count: bool) -> int:
    """Send lost chunks again; ``count``: a model worker was there to lose them, so the send
    counts towards ``COPE_MAX_CHUNK_ATTEMPTS`` (a chunk at the cap is failed instead)."""
    cap = max_chunk_attempts()
    by_job: dict[int, list[tuple[int, str, list[int], int]]] = {}
    for pk, job_id, side, item_ids, _, attempts in lost:
        by_job.setdefault(job_id, []).append((pk, side, item_ids, attempts))
    resent = 0
    for job_id, chunks in by_job.items():
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id).values("status").first()
            if job is None or job["status"] not in ACTIVE:
                continue
            still = set(
                JobChunk.objects.filter(
                    pk__in=[c[0] for c in chunks], status=ChunkStatus.QUEUED
                ).values_list("pk", flat=True)
            )
            chunks = [c for c in chunks if c[0] in still]
            spent = [
                (pk, side, ids) for pk, side, ids, attempts in chunks if count and attempts >= cap
            ]
            again = [pk for pk, _, _, attempts in chunks if not (count and attempts >= cap)]
            if spent:
                _give_up_on_chunks(job_id, spent, cap)
            if again:
                JobChunk.objects.filter(pk__in=again).update(
                    sent_at=timezone.now(),
                    attempts=F("attempts") + 1 if count else F("attempts"),
                )
                transaction.on_commit(partial(_send_chunks, job_id, again))
            resent += len(again)
            if spent:
                _claim_next_chunks(job_id)
                maybe_finish_job(job_id)
    return resent


def resume_job(job: Job, *, stale_after: timedelta | None = None) -> int:
    """Re-send the job's lost chunks (see ``lost_chunks``) and fill its window; returns how
    many lost chunks were sent again. A chunk sent ``COPE_MAX_CHUNK_ATTEMPTS`` times while a
    model worker was there is failed instead; while no model worker exists, sends are not
    counted. A chunk whose first message is still alive is scored twice at worst; the second
    result finds the chunk done and changes nothing."""
    if job.frozen_at is not None:
        return 0  # frozen (decided a finalize): nothing is re-sent
    if job.status not in ACTIVE:
        return 0
    lost, worker_alive = lost_chunks(job_ids=[job.pk], grace=stale_after)
    resent = _resend(lost, count=worker_alive)
    fill_window(job.pk)
    return resent


def resume_job_now(job: Job) -> int:
    """The "Resume stalled chunks" button: re-send chunks in flight not heard of for a minute.

    A person has watched the job stall, so this does not wait for ``lost_chunks``' proof that a
    chunk is lost (duplicates are harmless). It never counts a send or fails a chunk: pressing
    the button on a merely slow queue must not use up a chunk's sends.
    """
    if job.frozen_at is not None:
        return 0  # frozen (decided a finalize): nothing is re-sent
    if job.status not in ACTIVE:
        return 0
    cutoff = timezone.now() - MANUAL_STALE_AFTER
    chunks = [c for c in _in_flight([job.pk]) if c[4] <= cutoff]
    resent = _resend(chunks, count=False)
    fill_window(job.pk)
    return resent


def retry_failed_chunks(job: Job) -> int:
    """ "Retry failed": send exactly the items that have no label (failed chunks, and items that
    failed alone inside labeled chunks) again, in new chunks; reopens a finished job, which can
    then end succeeded. Returns the number of items retried.

    A person asked for it, so each new chunk gets a fresh ``COPE_MAX_CHUNK_ATTEMPTS`` sends.
    The old failed chunks become ``retried``: a late result for them is ignored.
    """
    with transaction.atomic():
        # The job row first (see the module docstring), and its status as of now.
        row = Job.objects.select_for_update().filter(pk=job.pk)
        current = row.values("status", "chunk_size", "frozen_at").first()
        if current is None or current["status"] == JobStatus.CANCELLED:
            raise JobError("A cancelled job cannot be retried; start a new job.")
        if current["frozen_at"] is not None:
            raise JobError(FROZEN_MESSAGE.format(job=job.pk))
        failed = list(
            Label.objects.filter(job=job, label__isnull=True)
            .order_by("side", "item_id")
            .values_list("side", "item_id")
        )
        if not failed:
            return 0
        JobChunk.objects.filter(job=job, status=ChunkStatus.FAILED).update(
            status=ChunkStatus.RETRIED
        )
        by_side: dict[str, list[int]] = {Side.A: [], Side.B: []}
        for side, item_id in failed:
            by_side[side].append(item_id)
        size = current["chunk_size"]
        start = (
            JobChunk.objects.filter(job=job)
            .order_by("-index")
            .values_list("index", flat=True)
            .first()
            or 0
        ) + 1
        new = []
        for side, ids in by_side.items():
            for n, first in enumerate(range(0, len(ids), size)):
                new.append(
                    JobChunk(
                        job_id=job.pk,
                        side=side,
                        index=start + n,
                        item_ids=ids[first : first + size],
                    )
                )
        JobChunk.objects.bulk_create(new, batch_size=2000)
        counters: dict[str, Any] = {
            "failed_chunks": 0,
            "errors_a": F("errors_a") - len(by_side[Side.A]),
            "errors_b": F("errors_b") - len(by_side[Side.B]),
        }
        if current["status"] in FINISHED:
            counters.update(status=JobStatus.RUNNING, finished_at=None, error="", stats={})
        row.update(**counters)
        _claim_next_chunks(job.pk)
    return len(failed)


def resume_stalled_jobs(*, stale_after: timedelta | None = None) -> dict[int, int]:
    """Run by beat: re-send lost chunks of every active job, fill every job's window and queue
    again the preparation of jobs whose ``prepare_job`` message was lost. Returns
    ``{job id: chunks re-sent}`` for jobs that had any."""
    grace = resend_grace() if stale_after is None else stale_after
    for job_id in Job.objects.filter(
        status=JobStatus.QUEUED,
        prepared_at__isnull=True,
        created_at__lte=timezone.now() - grace,
    ).values_list("pk", flat=True):
        send_prepare_job(job_id)
    lost, worker_alive = lost_chunks(grace=stale_after)
    resent: dict[int, int] = {}
    for chunk in lost:
        resent[chunk[1]] = resent.get(chunk[1], 0) + 1
    _resend(lost, count=worker_alive)
    for job_id in Job.objects.filter(status__in=ACTIVE, prepared_at__isnull=False).values_list(
        "pk", flat=True
    ):
        fill_window(job_id)
    return resent


# Reading, for the pages ---------------------------------------------------------------------


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


# The latest finished job decides a version's agreement (charts, panels, finalizing). NULLs
# last: PostgreSQL sorts NULL first in a plain descending order, SQLite last.
_LATEST_FIRST = (F("finished_at").desc(nulls_last=True), F("id").desc())


def latest_finished_job(version: Version) -> Job | None:
    """The version's most recent succeeded job: never a partial or failed one, whose agreement
    leaves items out."""
    return (
        Job.objects.filter(version=version, status=JobStatus.SUCCEEDED)
        .order_by(*_LATEST_FIRST)
        .first()
    )


def latest_finished_jobs(versions: Iterable[Version]) -> dict[int, Job]:
    """``latest_finished_job`` of each version, by version id."""
    ids = [v.pk for v in versions]
    latest: dict[int, Job] = {}
    for job in Job.objects.filter(version_id__in=ids, status=JobStatus.SUCCEEDED).order_by(
        "version_id", *_LATEST_FIRST
    ):
        latest.setdefault(job.version_id, job)
    return latest


def open_reviews_by_version(versions: Iterable[Version]) -> dict[int, int]:
    ids = [v.pk for v in versions]
    rows = (
        ReviewTask.objects.filter(
            job__version_id__in=ids, status__in=[ReviewStatus.OPEN, ReviewStatus.CLAIMED]
        )
        .values("job__version_id")
        .annotate(n=Count("pk"))
    )
    return {r["job__version_id"]: r["n"] for r in rows}
