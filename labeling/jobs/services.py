"""What a person (or beat) does to a job: start, prepare, cancel, resume and retry.

The ``Job`` row is the truth the UI reads. Starting a job only creates that row (texts read from
the locked version row); ``labeling.prepare_job`` on ``default`` samples the items, creates the
chunks and sends the first ones (``dispatch``, flow control). Results are written by
``results``; the figures come from ``stats``; which job speaks for a version is ``evaluation``.

Chunks can get lost (a broker restarted empty, a worker killed outright): ``lost_chunks`` tells
them from slow ones by asking the broker (``broker.look``), and the resumes send them again. A
retry sends exactly the items without a label again, in new chunks.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from labeling.jobs import broker
from labeling.jobs.comparisons import side_b
from labeling.jobs.dispatch import (
    ACTIVE,
    FINISHED,
    claim_next_chunks,
    fill_window,
    give_up_on_chunks,
    send_chunks,
    take_bookkeeping,
)
from labeling.jobs.errors import JobError
from labeling.jobs.results import maybe_finish_job
from labeling.models import ChunkStatus, Item, Job, JobChunk, JobStatus, Label, SampleSet, Side
from labeling.notify.events import job_finished
from policies.models import Version

# What "Resume stalled chunks" re-sends: chunks in flight not heard of for a minute.
MANUAL_STALE_AFTER = timedelta(minutes=1)

# A job that decided a finalize is frozen; retries are refused with this message.
FROZEN_MESSAGE = (
    "Job #{job} decided the finalizing of its version and is frozen: its labels, statistics "
    "and review tasks no longer change. Start a new job (on a new version) instead."
)

# A chunk in flight: (chunk, job, side, items, sent_at, attempts).
InFlight = tuple[int, int, str, list[int], datetime, int]


def max_chunk_attempts() -> int:
    return int(settings.COPE_MAX_CHUNK_ATTEMPTS)


def resume_after() -> timedelta:
    return timedelta(seconds=settings.COPE_RESUME_AFTER_SECONDS)


def resend_grace() -> timedelta:
    return timedelta(seconds=settings.COPE_RESEND_GRACE_SECONDS)


# Starting and preparing ----------------------------------------------------------------------


def start_job(
    *,
    version: Version,
    sample_set: SampleSet,
    sample_size: int | None,
    by: User,
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
    ``compare_text`` (see ``comparisons``).
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
        # Unordered: ``Version``'s default ordering joins its policy, and FOR UPDATE would lock
        # the policy's row too.
        texts = Version.objects.select_for_update().filter(pk=version.pk).order_by()
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
        transaction.on_commit(lambda: broker.send_prepare_job(job_id))
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
            failed = Job.objects.get(pk=job_id)
            job_finished(job=failed, status=JobStatus.FAILED, finished_at=now, stats={})
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
        claim_next_chunks(job_id)
        row.update(
            item_count=len(item_ids),
            chunk_count=len(slices),
            prepared_at=now,
            bookkeeping_seconds=F("bookkeeping_seconds") + take_bookkeeping(job_id, started),
        )
    return True


def cancel_job(job: Job) -> bool:
    """Cancel an active job: its unsent chunks are never sent, and results of the few in flight
    are ignored. Returns whether this call cancelled it."""
    return bool(
        Job.objects.filter(pk=job.pk, status__in=ACTIVE).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
    )


# Lost chunks, resume and retry --------------------------------------------------------------


def _in_flight(job_ids: list[int] | None = None) -> list[InFlight]:
    """(chunk, job, side, items, sent_at, attempts) of chunks sent and not answered."""
    chunks = JobChunk.objects.filter(
        status=ChunkStatus.QUEUED, sent_at__isnull=False, job__status__in=ACTIVE
    )
    if job_ids is not None:
        chunks = chunks.filter(job_id__in=job_ids)
    rows = chunks.order_by("job_id", "index", "side").values_list(
        "pk", "job_id", "side", "item_ids", "sent_at", "attempts"
    )
    # ``sent_at`` is never None here (filtered above); the check tells the type checker so.
    return [(pk, job, side, ids, at, n) for pk, job, side, ids, at, n in rows if at is not None]


def lost_chunks(
    *, job_ids: list[int] | None = None, grace: timedelta | None = None
) -> tuple[list[InFlight], bool]:
    """Chunks in flight that no one has: not in the ``gpu`` queue, no result waiting in
    ``default``, not held by any model worker, and sent more than ``grace``
    (``COPE_RESEND_GRACE_SECONDS``) ago. Where the broker cannot say what the workers hold, a
    chunk is lost only after ``COPE_RESUME_AFTER_SECONDS`` (above the task time limit).

    Returns (lost chunks, whether a model worker is known to be alive or might be).
    """
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


def _resend(lost: list[InFlight], *, count: bool) -> int:
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
                give_up_on_chunks(job_id, spent, cap)
            if again:
                JobChunk.objects.filter(pk__in=again).update(
                    sent_at=timezone.now(),
                    attempts=F("attempts") + 1 if count else F("attempts"),
                )
                transaction.on_commit(partial(send_chunks, job_id, again))
            resent += len(again)
            if spent:
                claim_next_chunks(job_id)
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
        _add_chunks(job.pk, by_side, size=current["chunk_size"])
        counters: dict[str, Any] = {
            "failed_chunks": 0,
            "errors_a": F("errors_a") - len(by_side[Side.A]),
            "errors_b": F("errors_b") - len(by_side[Side.B]),
        }
        if current["status"] in FINISHED:
            counters.update(status=JobStatus.RUNNING, finished_at=None, error="", stats={})
        row.update(**counters)
        claim_next_chunks(job.pk)
    return len(failed)


def _add_chunks(job_id: int, by_side: dict[str, list[int]], *, size: int) -> None:
    """New chunks of ``size`` items for these items, numbered after the job's last chunk."""
    last = (
        JobChunk.objects.filter(job_id=job_id)
        .order_by("-index")
        .values_list("index", flat=True)
        .first()
    )
    start = (last or 0) + 1
    new = [
        JobChunk(job_id=job_id, side=side, index=start + n, item_ids=ids[first : first + size])
        for side, ids in by_side.items()
        for n, first in enumerate(range(0, len(ids), size))
    ]
    JobChunk.objects.bulk_create(new, batch_size=2000)


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
        broker.send_prepare_job(job_id)
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
