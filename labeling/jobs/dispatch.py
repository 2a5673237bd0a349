"""Flow control: which of a job's chunks go to the model workers, and when.

At most ``COPE_CHUNKS_IN_FLIGHT`` chunks per job are out at a time: preparing a job sends its
first ones, and each recorded result sends the job's next (``results``), so the broker holds a
few messages per job whatever its size, and jobs running together share the workers (each job's
next chunk joins the back of the queue).

Every writer of a job's chunk statuses (recording a result, finishing, sending, retrying,
giving up on a chunk) first locks the job row (``select_for_update``), so "no chunk is queued
any more" cannot change between the check and the finish. SQLite has no row locks, but its
IMMEDIATE transactions (see settings) serialise writers, which gives the same order. The
functions here that say "the caller holds the job row's lock" rely on that.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from labeling.jobs import broker, sql
from labeling.models import ChunkStatus, Item, Job, JobChunk, JobStatus, Label
from worker.contract import ScoreItem, ScoreRequest

log = logging.getLogger(__name__)

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED)

# A chunk picked to be sent: (id, side, item ids, sends so far including this one).
Picked = tuple[int, str, list[int], int]


def chunks_in_flight() -> int:
    return int(settings.COPE_CHUNKS_IN_FLIGHT)


# Bookkeeping time ------------------------------------------------------------------------------

# Web-side seconds spent on a job after its last counters update (sending chunks after a
# commit, finishing), added to ``bookkeeping_seconds`` by the job's next update in this process
# rather than by an UPDATE and a commit of their own for each chunk.
_unrecorded: dict[int, float] = {}


def add_bookkeeping(job_id: int, started: float) -> None:
    """Note the seconds since ``started`` (``time.perf_counter``) as the job's bookkeeping."""
    _unrecorded[job_id] = _unrecorded.get(job_id, 0.0) + time.perf_counter() - started


def take_bookkeeping(job_id: int, started: float) -> float:
    """The job's noted bookkeeping seconds plus those since ``started``, for its next UPDATE."""
    return _unrecorded.pop(job_id, 0.0) + time.perf_counter() - started


# The window ------------------------------------------------------------------------------------

# The window's free places and the next unsent chunks to fill them. Names come from the model
# (``sql.names``); ``_WINDOW_FIELDS`` lists every one the two statements use.
_WINDOW_FIELDS = ("id", "job", "status", "sent_at", "index", "side", "item_ids", "attempts")
_PICK = """
    SELECT {id} FROM {table}
    WHERE {job} = %s AND {status} = %s AND {sent_at} IS NULL
    ORDER BY {index}, {side}
    LIMIT (SELECT CASE WHEN COUNT(*) < %s THEN %s - COUNT(*) ELSE 0 END FROM {table}
           WHERE {job} = %s AND {status} = %s AND {sent_at} IS NOT NULL)
"""
_MARK = """
    UPDATE {table} SET {sent_at} = %s, {attempts} = {attempts} + 1 WHERE {id} IN ({pick})
    RETURNING {id}, {index}, {side}, {item_ids}, {attempts}
"""


@functools.cache
def _window_statements(vendor: str) -> tuple[str, str]:
    """(pick, pick and mark) for this database, built once."""
    names = sql.names(JobChunk, *_WINDOW_FIELDS)
    pick = _PICK.format(**names)
    return pick, _MARK.format(pick=pick, **names)


def claim_next_chunks(job_id: int) -> int:
    """Mark the job's next unsent chunks sent, up to ``COPE_CHUNKS_IN_FLIGHT`` in flight, and
    send them once committed. The caller holds the job row's lock. Returns how many.

    One ``UPDATE … RETURNING`` picks them and hands back what sending needs, so the send reads
    no chunk again. A database without ``UPDATE … RETURNING`` (SQLite before 3.35) picks, then
    marks.
    """
    pick, mark = _window_statements(connection.vendor)
    window = chunks_in_flight()
    queued = ChunkStatus.QUEUED
    params: list[Any] = [job_id, queued, window, window, job_id, queued]
    if not sql.update_returning():
        return _pick_then_mark(job_id, pick, params)
    now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the ORM writes it
    with connection.cursor() as cursor:
        cursor.execute(mark, [now, *params])
        rows = cursor.fetchall()
    if rows:
        picked: list[Picked] = [
            # jsonb comes back decoded (psycopg), SQLite's JSON as text.
            (int(pk), str(side), ids if isinstance(ids, list) else json.loads(ids), int(attempts))
            for pk, _index, side, ids, attempts in sorted(rows, key=lambda r: (r[1], r[2]))
        ]
        ids = [pk for pk, *_ in picked]
        transaction.on_commit(lambda: send_chunks(job_id, ids, picked))
    return len(rows)


def _pick_then_mark(job_id: int, pick: str, params: list[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(pick, params)
        ids = [int(row[0]) for row in cursor.fetchall()]
    if ids:
        JobChunk.objects.filter(pk__in=ids).update(
            sent_at=timezone.now(), attempts=F("attempts") + 1
        )
        transaction.on_commit(lambda: send_chunks(job_id, ids))
    return len(ids)


def fill_window(job_id: int) -> int:
    """Send an active job's next chunks if fewer than ``COPE_CHUNKS_IN_FLIGHT`` are out."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).values("status").first()
        if job is None or job["status"] not in ACTIVE:
            return 0
        return claim_next_chunks(job_id)


# Sending ---------------------------------------------------------------------------------------


def send_chunks(job_id: int, chunk_ids: list[int], chunks: list[Picked] | None = None) -> int:
    """Send chunks already marked sent (``sent_at``, ``attempts``) with their texts: one query
    for the policy texts the chunks' sides need, one for the chunks (unless ``chunks`` gives
    them), one for their items. A broker that refuses is logged, not raised: the chunks look
    lost to the periodic resume, which sends them again. Returns how many went."""
    started = time.perf_counter()
    if chunks is None:
        chunks = list(
            JobChunk.objects.filter(pk__in=chunk_ids, status=ChunkStatus.QUEUED)
            .order_by("index", "side")
            .values_list("pk", "side", "item_ids", "attempts")
        )
    sides = sorted({side for _, side, _, _ in chunks})
    # Only the texts sent: a policy can be tens of kilobytes, and a chunk carries one side.
    columns = [f"text_{side.lower()}" for side in sides]
    row = Job.objects.filter(pk=job_id).values_list(*columns).first() if columns else None
    if row is None:
        return 0
    policy_text = dict(zip(sides, row, strict=True))
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
            broker.send_score_request(request.to_dict())
            sent += 1
    except Exception:
        log.warning(
            "job %s: the broker refused chunks; they will be re-sent", job_id, exc_info=True
        )
    add_bookkeeping(job_id, started)
    return sent


def give_up_on_chunks(job_id: int, chunks: list[tuple[int, str, list[int]]], cap: int) -> None:
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
