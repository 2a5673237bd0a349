"""Recording what the model workers send back, and finishing a job.

Results come back as ``labeling.record_chunk`` tasks on ``default`` and are written here
idempotently: labels are upserted on (job, item, side), a chunk moves queued → done/failed with
a conditional UPDATE, and only the delivery that moved it counts. Each result sends the job's
next chunk (``dispatch``); the result that leaves no chunk queued finishes the job.

Outcomes are honest: a job ends **succeeded** only when every item has a label under both
wordings, **partial** when some items failed (the page says how many per side and why), and
**failed** when none was labeled. Only a succeeded job can speak for its version
(``evaluation.deciding_job``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, DateTimeField, F, UniqueConstraint, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from labeling.explain.services import explain_after_job
from labeling.jobs import sql, stats
from labeling.jobs.dispatch import ACTIVE, claim_next_chunks, take_bookkeeping
from labeling.models import ChunkStatus, Job, JobChunk, JobStatus, Label, ReviewTask
from labeling.notify.events import job_finished
from labeling.review.carry_over import carry_over_decisions
from worker.contract import ScoreResult

# An item's outcome under one wording: (label, p1, error); label None when it failed.
Outcomes = dict[int, tuple[int | None, float | None, str]]


@dataclass(frozen=True)
class RecordOutcome:
    """What ``record_chunk_result`` did, for logs and tests."""

    action: str  # "recorded", "failed", "duplicate", "ignored"
    finished: bool = False


@dataclass(frozen=True)
class _Target:
    """The job and chunk a result is for, read under the job row's lock."""

    job_status: str
    job_backend: str
    side: str
    item_ids: list[int]
    chunk_was: str  # the chunk's status before this result

    @property
    def job_active(self) -> bool:
        return self.job_status in ACTIVE


@dataclass(frozen=True)
class _Tally:
    """One chunk's outcomes and what they add to the job's counters."""

    outcomes: Outcomes
    done: int
    errors: int
    failed_chunks: int


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
        target = _lock_target(result)
        if isinstance(target, RecordOutcome):
            return target
        mark = _mark_chunk_failed if result.error else _mark_chunk_done
        tally = mark(result, target, now)
        upsert_labels(result.job_id, target.side, tally.outcomes, now)
        counters = _job_counters(result, target, tally, now)
        sent_more = claim_next_chunks(result.job_id)
        counters["bookkeeping_seconds"] = F("bookkeeping_seconds") + take_bookkeeping(
            result.job_id, started
        )
        Job.objects.filter(pk=result.job_id).update(**counters)
        reopened = not target.job_active or target.job_status == JobStatus.QUEUED
        status_now = JobStatus.RUNNING if reopened else target.job_status
        # Chunks just sent are queued: the job cannot finish yet, nothing to count.
        finished = not sent_more and maybe_finish_job(result.job_id, locked_status=status_now)
    return RecordOutcome("failed" if result.error else "recorded", finished=finished)


def _lock_target(result: ScoreResult) -> _Target | RecordOutcome:
    """Lock the result's job row and read its chunk, or say why the result changes nothing."""
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
    if job["status"] not in ACTIVE and was != ChunkStatus.FAILED:
        return RecordOutcome("ignored")  # cannot happen: a finished job has no queued chunk
    return _Target(
        job_status=str(job["status"]),
        job_backend=str(job["backend"]),
        side=str(chunk["side"]),
        item_ids=list(chunk["item_ids"]),
        chunk_was=str(was),
    )


def _mark_chunk_failed(result: ScoreResult, target: _Target, now: datetime) -> _Tally:
    JobChunk.objects.filter(pk=result.chunk_id, status=target.chunk_was).update(
        status=ChunkStatus.FAILED,
        finished_at=now,
        error=result.error[:5000],
        model_seconds=result.model_seconds,
    )
    outcomes: Outcomes = {i: (None, None, result.error[:2000]) for i in target.item_ids}
    return _Tally(outcomes, done=0, errors=len(target.item_ids), failed_chunks=1)


def _mark_chunk_done(result: ScoreResult, target: _Target, now: datetime) -> _Tally:
    JobChunk.objects.filter(pk=result.chunk_id, status=target.chunk_was).update(
        status=ChunkStatus.DONE,
        finished_at=now,
        model_seconds=result.model_seconds,
        error="",
    )
    wanted = set(target.item_ids)
    outcomes: Outcomes = {
        o.item_id: (o.label, o.p1, o.error[:2000])
        for o in result.outcomes
        if o.item_id in wanted  # a worker cannot write labels outside its chunk
    }
    for i in target.item_ids:
        if i not in outcomes:
            outcomes[i] = (None, None, "no result for this item from the worker")
        elif outcomes[i][0] is None and not outcomes[i][2]:
            outcomes[i] = (None, None, "the worker returned no label")
    errors = sum(1 for label, _, _ in outcomes.values() if label is None)
    done, failed = len(target.item_ids) - errors, 0
    if target.chunk_was == ChunkStatus.FAILED:
        # Take back what the failure counted: every item an error, one failed chunk.
        errors -= len(target.item_ids)
        failed = -1
    return _Tally(outcomes, done=done, errors=errors, failed_chunks=failed)


def _job_counters(
    result: ScoreResult, target: _Target, tally: _Tally, now: datetime
) -> dict[str, Any]:
    """The job row's update for one result: ``F()`` counters, the first result's start and
    worker, and a reopening when a finished job's failed chunk got its labels after all."""
    side = target.side.lower()
    counters: dict[str, Any] = {
        f"done_{side}": F(f"done_{side}") + tally.done,
        f"errors_{side}": F(f"errors_{side}") + tally.errors,
        "failed_chunks": F("failed_chunks") + tally.failed_chunks,
        "model_seconds": F("model_seconds") + result.model_seconds,
        "status": Case(
            When(status=JobStatus.QUEUED, then=Value(JobStatus.RUNNING)),
            default=F("status"),
        ),
        "started_at": Coalesce(F("started_at"), Value(now, output_field=DateTimeField())),
    }
    if not target.job_active:
        # Finished with this chunk failed: reopen, so that the finish recomputes the agreement
        # with its labels and adds review tasks for its mismatches.
        counters.update(status=JobStatus.RUNNING, finished_at=None, error="", stats={})
    worker = result.worker
    if not target.job_backend and worker.backend:
        counters.update(
            backend=worker.backend[:40],
            model_id=worker.model_id[:500],
            model_revision=worker.model_revision[:100],
            device=worker.device[:100],
            weak_backend=worker.weak or worker.backend == "embedding",
        )
    return counters


# Writing labels --------------------------------------------------------------------------------

# One statement for a chunk's labels on PostgreSQL. Table, columns, their types and the conflict
# key come from ``Label`` (``_upsert_statement``).
_UPSERT = """
    INSERT INTO {table} ({job}, {item}, {side}, {label}, {p1}, {error}, {created_at})
    SELECT %s, t.item_id, %s, t.label, t.p1, t.error, %s
    FROM unnest(%s::{item_type}[], %s::{label_type}[], %s::{p1_type}[], %s::{error_type}[])
        AS t(item_id, label, p1, error)
    ON CONFLICT ({conflict})
    DO UPDATE SET {label} = EXCLUDED.{label}, {p1} = EXCLUDED.{p1}, {error} = EXCLUDED.{error}
"""
# The unique key labels are upserted on: (job, item, side).
LABEL_KEY = "label_unique"


def label_key_fields() -> tuple[str, ...]:
    """The fields of ``Label``'s unique constraint the upserts conflict on."""
    for constraint in Label._meta.constraints:
        if isinstance(constraint, UniqueConstraint) and constraint.name == LABEL_KEY:
            return tuple(constraint.fields)
    raise LookupError(f"Label has no unique constraint {LABEL_KEY!r}")


@functools.cache
def _upsert_statement(vendor: str) -> str:
    """The statement for this database (built once: the models do not change while running)."""
    names = sql.names(Label, "job", "item", "side", "label", "p1", "error", "created_at")
    types = {f"{name}_type": sql.db_type(Label, name) for name in ("item", "label", "p1", "error")}
    conflict = ", ".join(sql.column(Label, name) for name in label_key_fields())
    return _UPSERT.format(conflict=conflict, **names, **types)


def upsert_labels(job_id: int, side: str, outcomes: Outcomes, now: datetime) -> None:
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
            unique_fields=list(label_key_fields()),
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
    with connection.cursor() as cursor:
        statement = _upsert_statement(connection.vendor)
        cursor.execute(statement, [job_id, side, now, items, labels, p1s, errors])


# Finishing -------------------------------------------------------------------------------------


def maybe_finish_job(job_id: int, *, locked_status: str | None = None) -> bool:
    """Finish the job when no chunk is queued: succeeded if every item has a label under both
    wordings, partial if some do, failed if none does.

    The job row is locked before the chunks are counted, so a retry cannot put a chunk back in
    the queue between the count and the finish (it waits for the lock, then reopens the job).
    ``locked_status``: the caller holds the lock and has read the (not frozen) job's status.
    """
    started = time.perf_counter()
    # No savepoint: inside ``record_chunk_result`` a failure here rolls the whole result back.
    with transaction.atomic(savepoint=False):
        if not _running_and_unfrozen(job_id, locked_status):
            return False
        if JobChunk.objects.filter(job_id=job_id, status=ChunkStatus.QUEUED).exists():
            return False
        job = Job.objects.select_related("version").get(pk=job_id)
        transaction.on_commit(lambda: stats.analyze_after_job(job.item_count))
        job_stats, mismatches = stats.compute_job_stats(job)
        final, error = _outcome(job, job_stats["labeled"])
        _open_review_tasks(job, mismatches)
        carry_over_decisions(job_id=job_id)  # reruns do not ask twice
        finished_at = timezone.now()
        Job.objects.filter(pk=job_id).update(
            status=final,
            finished_at=finished_at,
            stats=job_stats,
            error=error,
            bookkeeping_seconds=F("bookkeeping_seconds") + take_bookkeeping(job_id, started),
        )
        # The job row is locked and was running: this is the one finish of this run.
        job_finished(job=job, status=final, finished_at=finished_at, stats=job_stats)
        if final == JobStatus.SUCCEEDED and mismatches:
            # Which clause decides each mismatch: explained in the background once committed.
            transaction.on_commit(lambda: explain_after_job(job_id))
    return True


def _running_and_unfrozen(job_id: int, locked_status: str | None) -> bool:
    if locked_status is not None:
        return locked_status == JobStatus.RUNNING
    row = Job.objects.select_for_update().filter(pk=job_id).values("status", "frozen_at").first()
    # A frozen job's stats and review tasks never change.
    return row is not None and row["status"] == JobStatus.RUNNING and row["frozen_at"] is None


def _outcome(job: Job, labeled: dict[str, int]) -> tuple[str, str]:
    """(final status, error shown) from how many items each side labeled."""
    if labeled["A"] == labeled["B"] == job.item_count:
        return JobStatus.SUCCEEDED, ""
    if labeled["A"] + labeled["B"] == 0:
        return JobStatus.FAILED, "No item got a label; see the reasons below."
    return JobStatus.PARTIAL, (
        f"{job.item_count - labeled['A']:,} items failed under A and "
        f"{job.item_count - labeled['B']:,} under B; see the reasons below. "
        "Agreement counts only items labeled under both wordings."
    )


def _open_review_tasks(job: Job, mismatches: list[stats.Mismatch]) -> None:
    ReviewTask.objects.bulk_create(
        [
            ReviewTask(
                job_id=job.pk,
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
