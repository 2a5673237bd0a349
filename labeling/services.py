"""Labeling jobs: start, record results, finish, cancel, resume and retry.

The ``Job`` row is the truth the UI reads. Chunks go to the GPU workers by task name on the
``gpu`` queue; results come back as ``labeling.record_chunk`` tasks on ``default`` and are
written here idempotently: labels are upserted on (job, item, side), a chunk moves
queued → done/failed with a conditional UPDATE, and only the delivery that moved it counts.

Every writer of a job's chunk statuses (recording a result, finishing, retrying, giving up on a
chunk) first locks the job row (``select_for_update``), so "no chunk is queued any more" cannot
change between the check and the finish. SQLite has no row locks, but its IMMEDIATE
transactions (see settings) serialise writers, which gives the same order.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Count, DateTimeField, F, Max, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from labeling import agreement
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
from policies.models import Version
from worker.contract import (
    GPU_QUEUE,
    SCORE_CHUNK_TASK,
    ScoreItem,
    ScoreRequest,
    ScoreResult,
)

# When the job page offers "Resume stalled chunks" (a person decides; see ``resume_job_now``).
STALE_AFTER = timedelta(minutes=10)
# What the button re-sends: chunks not heard of for a minute.
MANUAL_STALE_AFTER = timedelta(minutes=1)
WEAK_NOTE = "labels from the embedding baseline, a weak classifier, not CoPE"


# a-policies: a job that decided a finalize is frozen; retries are refused with this message.
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


def max_chunk_attempts() -> int:
    return int(settings.COPE_MAX_CHUNK_ATTEMPTS)


def resume_after() -> timedelta:
    return timedelta(seconds=settings.COPE_RESUME_AFTER_SECONDS)


def _send_chunks(job_id: int, chunk_ids: list[int]) -> int:
    """Send queued chunks with their texts: one item query per chunk, one UPDATE for all sent_at.

    A chunk already sent ``COPE_MAX_CHUNK_ATTEMPTS`` times is not sent again but failed with a
    clear error: a chunk that kills its worker (out of memory, a CUDA abort) would otherwise be
    re-sent, and kill a worker, forever. Returns the number of chunks sent.
    """
    started = time.perf_counter()
    cap = max_chunk_attempts()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).values("status").first()
        if job is None or job["status"] not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return 0
        chunks = list(
            JobChunk.objects.filter(pk__in=chunk_ids, status=ChunkStatus.QUEUED)
            .order_by("index", "side")
            .values_list("pk", "side", "item_ids", "attempts")
        )
        spent = [(pk, side, ids) for pk, side, ids, attempts in chunks if attempts >= cap]
        if spent:
            _give_up_on_chunks(job_id, spent, cap)
    texts = Job.objects.filter(pk=job_id).values("text_a", "text_b").first() or {}
    sent: list[int] = []
    item_texts: dict[int, str] = {}
    for pk, side, item_ids, attempts in chunks:
        if attempts >= cap:
            continue
        missing = [i for i in item_ids if i not in item_texts]
        if missing:
            item_texts.update(Item.objects.filter(pk__in=missing).values_list("pk", "text"))
        request = ScoreRequest(
            job_id=job_id,
            chunk_id=pk,
            side=side,
            policy=texts["text_a"] if side == Side.A else texts["text_b"],
            items=[ScoreItem(i, item_texts[i]) for i in item_ids if i in item_texts],
            attempt=attempts + 1,  # this send; the worker gives up on a chunk that kills it
        )
        send_score_request(request.to_dict())
        sent.append(pk)
        if side == Side.B:  # both sides of this slice are sent: its texts are not needed again
            for i in item_ids:
                item_texts.pop(i, None)
    JobChunk.objects.filter(pk__in=sent).update(sent_at=timezone.now(), attempts=F("attempts") + 1)
    Job.objects.filter(pk=job_id).update(
        bookkeeping_seconds=F("bookkeeping_seconds") + (time.perf_counter() - started)
    )
    if spent:
        maybe_finish_job(job_id)  # the chunks given up on may have been the last queued ones
    return len(sent)


def _give_up_on_chunks(job_id: int, chunks: list[tuple[int, str, list[int]]], cap: int) -> None:
    """Fail queued chunks that were sent ``cap`` times without an answer (job row locked)."""
    error = (
        f"Sent to the workers {cap} times without an answer (COPE_MAX_CHUNK_ATTEMPTS={cap}). "
        "A worker may be dying on it (out of memory, a CUDA error), or no GPU worker is "
        "running. Check the worker logs, then retry the failed chunks."
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


def _sample_item_ids(sample_set: SampleSet, sample_size: int | None, seed: int) -> list[int]:
    ids = list(sample_set.items.order_by("row_number").values_list("pk", flat=True))
    if sample_size and sample_size < len(ids):
        chosen = set(random.Random(seed).sample(ids, sample_size))
        ids = [i for i in ids if i in chosen]  # keep file order
    return ids


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
    """Create a binocular job (texts frozen, chunks per side) and send it once committed.

    ``sample_size`` picks a random sample of that many items (seeded, in file order);
    ``None`` or a size at least the set's labels every item. Side B is the version's twin,
    or ``compare_version``'s text, or ``compare_text`` (see ``labeling.comparisons``).
    """
    from labeling.comparisons import side_b  # b-gold

    compare_kind, text_b = side_b(
        version=version, compare_version=compare_version, compare_text=compare_text
    )
    if sample_size is not None and sample_size < 1:
        raise JobError("The sample size must be at least 1.")
    size = int(chunk_size or settings.COPE_CHUNK_SIZE)
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    item_ids = _sample_item_ids(sample_set, sample_size, seed)
    if not item_ids:
        raise JobError("This sample set has no items.")
    slices = [item_ids[i : i + size] for i in range(0, len(item_ids), size)]
    with transaction.atomic():
        job = Job.objects.create(
            version=version,
            sample_set=sample_set,
            text_a=version.text,
            text_b=text_b,
            compare_kind=compare_kind,
            compare_version=compare_version,
            sample_size=sample_size
            if sample_size and sample_size < sample_set.item_count
            else None,
            sample_seed=seed if sample_size else None,
            item_count=len(item_ids),
            chunk_size=size,
            chunk_count=len(slices),
            created_by=by,
        )
        chunks = JobChunk.objects.bulk_create(
            [
                JobChunk(job=job, side=side, index=index, item_ids=ids)
                for index, ids in enumerate(slices)
                for side in (Side.A, Side.B)
            ],
            batch_size=1000,
        )
        chunk_ids = [c.pk for c in chunks]
        if any(pk is None for pk in chunk_ids):  # backends that return no ids on bulk insert
            chunk_ids = list(JobChunk.objects.filter(job=job).values_list("pk", flat=True))
        transaction.on_commit(lambda: _send_chunks(job.pk, chunk_ids))
    return job


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
    """Write one chunk's result, idempotently.

    A success moves a queued chunk to done, and also a failed one: when a re-sent chunk's copies
    disagree (one worker died or erred, another scored it) the labels win, whichever arrives
    first; a job that already finished with that failure is reopened and finished again. A
    failure only moves a queued chunk: it never replaces labels. A redelivered success for a done
    chunk changes nothing.
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
            return RecordOutcome("ignored")  # a-policies: decided a finalize, frozen for good
        chunk = (
            JobChunk.objects.filter(pk=result.chunk_id, job_id=result.job_id)
            .values("side", "item_ids", "status")
            .first()
        )
        if chunk is None:
            return RecordOutcome("ignored")
        was = chunk["status"]
        if was == ChunkStatus.DONE or (result.error and was != ChunkStatus.QUEUED):
            return RecordOutcome("duplicate")
        active = job["status"] in (JobStatus.QUEUED, JobStatus.RUNNING)
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
            outcomes = {i: (None, None, result.error[:2000]) for i in item_ids}
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
                o.item_id: (o.label, o.p1, o.error)
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
        counters["bookkeeping_seconds"] = F("bookkeeping_seconds") + (time.perf_counter() - started)
        Job.objects.filter(pk=result.job_id).update(**counters)
        finished = maybe_finish_job(result.job_id)
    return RecordOutcome("failed" if result.error else "recorded", finished=finished)


def maybe_finish_job(job_id: int) -> bool:
    """Finish the job when no chunk is queued: succeeded, or failed if every chunk failed.

    The job row is locked before the chunks are counted, so a retry cannot put a chunk back in
    the queue between the count and the finish (it waits for the lock, then reopens the job).
    """
    started = time.perf_counter()
    with transaction.atomic():
        status = (
            Job.objects.select_for_update().filter(pk=job_id).values("status", "frozen_at").first()
        )
        if status is None or status["status"] != JobStatus.RUNNING:
            return False
        if status["frozen_at"] is not None:
            return False  # a-policies: a frozen job's stats and review tasks never change
        if JobChunk.objects.filter(job_id=job_id, status=ChunkStatus.QUEUED).exists():
            return False
        counts = JobChunk.objects.filter(job_id=job_id).aggregate(
            total=Count("pk"), failed=Count("pk", filter=Q(status=ChunkStatus.FAILED))
        )
        final = JobStatus.FAILED if counts["total"] == counts["failed"] else JobStatus.SUCCEEDED
        Job.objects.filter(pk=job_id).update(status=final, finished_at=timezone.now())
        job = Job.objects.select_related("version").get(pk=job_id)
        stats, mismatches = compute_job_stats(job)
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
        update: dict[str, Any] = {
            "stats": stats,
            "bookkeeping_seconds": F("bookkeeping_seconds") + (time.perf_counter() - started),
        }
        if final == JobStatus.FAILED:
            update["error"] = "Every chunk failed; see the chunk errors below."
        Job.objects.filter(pk=job_id).update(**update)
    return True


def compute_job_stats(
    job: Job,
) -> tuple[dict[str, Any], list[tuple[int, int, int, float | None, float | None]]]:
    """Agreement stats of a job, and its mismatches as (item, label A, label B, p1 A, p1 B)."""
    by_item: dict[int, list[Any]] = {}
    for item_id, side, label, p1 in Label.objects.filter(job=job).values_list(
        "item_id", "side", "label", "p1"
    ):
        row = by_item.setdefault(item_id, [None, None, None, None])
        if side == Side.A:
            row[0], row[2] = label, p1
        else:
            row[1], row[3] = label, p1
    result = agreement.compute_agreement((r[0], r[1]) for r in by_item.values())
    missing = job.item_count - len(by_item)
    stats = result.to_dict()
    if missing > 0:
        stats["excluded"]["no label under either wording"] = missing
        stats["excluded_count"] += missing
        stats["total"] += missing
    mismatches = [
        (item_id, r[0], r[1], r[2], r[3])
        for item_id, r in by_item.items()
        if r[0] is not None and r[1] is not None and r[0] != r[1]
    ]
    return stats, mismatches


def cancel_job(job: Job) -> bool:
    """Cancel an active job. Messages already queued are still scored by the workers (revoking
    needs a result backend and a broadcast the filesystem broker does not have); their results
    are ignored. Returns whether this call cancelled it."""
    return bool(
        Job.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
    )


def _lost_chunks(stale_after: timedelta) -> Q:
    """A filter for queued chunks that no worker can still be holding.

    A chunk waits in the broker behind the others before a worker takes it, so "sent long ago"
    alone would re-send a long job's tail. A queued chunk counts as lost when it was never sent,
    or was sent more than ``stale_after`` (above the task time limit) ago and either

    * a chunk sent after it finished more than ``stale_after`` ago: the workers took ours before
      that one, so it would have ended (or been killed by the time limit) by now; or
    * no chunk of any job finished within ``stale_after``: the workers are idle or gone.
    """
    cutoff = timezone.now() - stale_after
    lost = Q(sent_at__isnull=True)
    if not JobChunk.objects.filter(finished_at__gt=cutoff).exists():
        return lost | Q(sent_at__lte=cutoff)
    horizon = JobChunk.objects.filter(finished_at__lte=cutoff).aggregate(h=Max("sent_at"))["h"]
    if horizon is not None:
        lost |= Q(sent_at__lt=horizon)
    return lost


def stale_chunks(job: Job, *, stale_after: timedelta | None = None) -> QuerySet[JobChunk]:
    """The job's queued chunks that are lost (see ``_lost_chunks``); automatic resume sends
    these. ``stale_after`` defaults to ``COPE_RESUME_AFTER_SECONDS``."""
    lost = _lost_chunks(resume_after() if stale_after is None else stale_after)
    return JobChunk.objects.filter(job=job, status=ChunkStatus.QUEUED).filter(lost)


def resume_job(job: Job, *, stale_after: timedelta | None = None) -> int:
    """Re-send the job's lost queued chunks (see ``stale_chunks``); returns how many were sent.

    A chunk sent ``COPE_MAX_CHUNK_ATTEMPTS`` times is failed instead (see ``_send_chunks``). A
    chunk whose first message is still alive is scored twice at worst; the second result finds
    the chunk done and changes nothing.
    """
    if job.frozen_at is not None:
        return 0  # a-policies: frozen (decided a finalize): nothing is re-sent
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return 0
    chunk_ids = list(stale_chunks(job, stale_after=stale_after).values_list("pk", flat=True))
    return _send_chunks(job.pk, chunk_ids) if chunk_ids else 0


def _nudgeable_chunks(job: Job, stale_after: timedelta) -> QuerySet[JobChunk]:
    cutoff = timezone.now() - stale_after
    return JobChunk.objects.filter(
        Q(sent_at__isnull=True) | Q(sent_at__lte=cutoff),
        job=job,
        status=ChunkStatus.QUEUED,
        attempts__lt=max_chunk_attempts(),
    )


def resume_job_now(job: Job) -> int:
    """The "Resume stalled chunks" button: re-send queued chunks not heard of for a minute.

    A person has watched the job stall, so this does not wait for ``stale_chunks``' proof that a
    chunk is lost (duplicates are harmless). It skips chunks that have used their
    ``COPE_MAX_CHUNK_ATTEMPTS`` sends and never fails a chunk: pressing the button on a merely
    slow queue must not use up a chunk's sends and fail it; the periodic resume gives up on those
    once they are shown lost.
    """
    if job.frozen_at is not None:
        return 0  # a-policies: frozen (decided a finalize): nothing is re-sent
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return 0
    chunk_ids = list(_nudgeable_chunks(job, MANUAL_STALE_AFTER).values_list("pk", flat=True))
    return _send_chunks(job.pk, chunk_ids) if chunk_ids else 0


def retry_failed_chunks(job: Job) -> int:
    """Put failed chunks back in the queue and send them again; reopens a finished job.

    A person asked for it, so each retried chunk gets a fresh ``COPE_MAX_CHUNK_ATTEMPTS`` sends.
    """
    with transaction.atomic():
        # The job row first (see the module docstring), and its status as of now.
        status = (
            Job.objects.select_for_update().filter(pk=job.pk).values("status", "frozen_at").first()
        )
        if status is None or status["status"] == JobStatus.CANCELLED:
            raise JobError("A cancelled job cannot be retried; start a new job.")
        if status["frozen_at"] is not None:  # a-policies
            raise JobError(FROZEN_MESSAGE.format(job=job.pk))
        failed = list(
            JobChunk.objects.filter(job=job, status=ChunkStatus.FAILED).values_list(
                "pk", "side", "item_ids"
            )
        )
        if not failed:
            return 0
        retried = [pk for pk, _, _ in failed]
        JobChunk.objects.filter(pk__in=retried, status=ChunkStatus.FAILED).update(
            status=ChunkStatus.QUEUED, error="", finished_at=None, attempts=0
        )
        counters: dict[str, Any] = {"failed_chunks": F("failed_chunks") - len(failed)}
        for _, side, item_ids in failed:
            errors = f"errors_{side.lower()}"
            counters[errors] = counters.get(errors, F(errors)) - len(item_ids)
        if status["status"] in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            counters.update(status=JobStatus.RUNNING, finished_at=None, error="", stats={})
        Job.objects.filter(pk=job.pk).update(**counters)
        transaction.on_commit(lambda: _send_chunks(job.pk, retried))
    return len(retried)


def resume_stalled_jobs(*, stale_after: timedelta | None = None) -> dict[int, int]:
    """Resume every active job; ``{job id: chunks re-sent}`` for those that had any."""
    resent: dict[int, int] = {}
    for job in Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]):
        n = resume_job(job, stale_after=stale_after)
        if n:
            resent[job.pk] = n
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
    finished = job.done_a + job.done_b + job.errors_a + job.errors_b
    total = job.item_count * 2
    rate = eta = None
    if job.started_at and finished:
        end = job.finished_at or timezone.now()
        elapsed = max((end - job.started_at).total_seconds(), 1e-3)
        rate = finished / elapsed
        if job.is_active and rate > 0:
            eta = (total - finished) / rate
    stalled = job.is_active and _nudgeable_chunks(job, stale_after).exists()
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
    """The version's most recent succeeded job."""
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
