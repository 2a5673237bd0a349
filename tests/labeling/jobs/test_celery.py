"""Real Celery: the web-side worker and the GPU-side worker (embedding backend) label a job."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count

from labeling.explain.dispatch import ACTIVE
from labeling.explain.services import explain_max_items
from labeling.jobs import services
from labeling.models import ChunkStatus, ExplainRun, Job, JobChunk, JobStatus, Label, ReviewTask
from tests.labeling.conftest import make_sample_set, make_version, retry_locked, wait_for

pytestmark = pytest.mark.celery_worker

TEXTS = [
    "You are a worthless idiot, Sam, and everyone hates you.",
    "I will hurt you, Jordan, if you show up tomorrow.",
    "The paper's methodology is weak and the conclusions do not follow.",
    "Lovely weather in Lisbon today.",
    "Critique of the minister's published budget: the numbers do not add up.",
    "Shut up, you pathetic loser Alex.",
    "Our team shipped the release on time.",
    "That argument is nonsense, but I respect you.",
]


def _job_done(job: Job) -> bool:
    job.refresh_from_db()
    return not job.is_active


def _explained(job: Job) -> bool:
    """Whether the explain run a finished job starts over its mismatches (``explain_after_job``,
    after the finish commits) has started and ended; True where it starts none."""
    runs = ExplainRun.objects.filter(job=job)
    if not runs.exists():
        return explain_max_items() <= 0 or not ReviewTask.objects.filter(job=job).exists()
    return not runs.filter(status__in=ACTIVE).exists()


@pytest.mark.django_db(transaction=True)
def test_real_workers_label_every_item_once(celery_workers: Any, author: Any) -> None:
    version = make_version(author)
    sample_set = make_sample_set(author, TEXTS * 3)
    job = services.start_job(
        version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=8
    )
    wait_for(lambda: _job_done(job), timeout=120, what="the job to finish", workers=celery_workers)
    assert job.status == JobStatus.SUCCEEDED, celery_workers.log_tail()
    assert job.done_a == job.done_b == 24 and job.errors_a == job.errors_b == 0
    assert job.backend == "embedding" and job.weak_backend and job.model_id
    labels = Label.objects.filter(job=job)
    assert labels.count() == 48
    assert not labels.values("item", "side").annotate(n=Count("pk")).filter(n__gt=1).exists()
    assert job.stats["n"] == 24
    mismatches = {
        item
        for item in sample_set.items.values_list("pk", flat=True)
        if len(set(labels.filter(item_id=item).values_list("label", flat=True))) == 2
    }
    assert set(ReviewTask.objects.filter(job=job).values_list("item_id", flat=True)) == mismatches
    assert job.stats["disagree"] == len(mismatches)
    # The job's finish started an explain run of its mismatches: it ends before the test does,
    # or its last write meets the teardown's flush. On SQLite the bookkeeping worker is a thread
    # of this process and the filesystem broker has no inspection: ``wait_idle`` cannot see it.
    wait_for(
        lambda: _explained(job), timeout=120, what="the job's explain run", workers=celery_workers
    )


def _other_backends() -> set[int]:
    """The PostgreSQL backends connected to the test database, other than this process's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_the_bookkeeping_worker_keeps_its_database_connection_between_tasks(
    celery_workers: Any, author: Any
) -> None:
    """Celery's Django fixup closes the connection around every task unless told otherwise
    (settings.CELERY_DB_REUSE_MAX): each bookkeeping task then paid for a new connection. The
    worker's connection outlives a job's tasks and serves the next job's."""
    if connection.vendor != "postgresql":
        pytest.skip("on SQLite the bookkeeping worker is a thread of this process")
    version = make_version(author)
    kept = []
    for _ in range(2):
        job = services.start_job(
            version=version,
            sample_set=make_sample_set(author, TEXTS),
            sample_size=None,
            by=author,
            chunk_size=4,
        )
        wait_for(lambda j=job: _job_done(j), timeout=120, what="the job", workers=celery_workers)
        kept.append(_other_backends())
    # A connection closed after each task cannot be seen after both jobs: the second job's
    # tasks opened connections of their own (new backends, new pids).
    assert kept[0] & kept[1], celery_workers.log_tail()


@pytest.mark.django_db(transaction=True)
def test_gpu_worker_killed_mid_job_then_resumed(celery_workers: Any, author: Any) -> None:
    version = make_version(author)
    sample_set = make_sample_set(author, TEXTS * 2)
    job = services.start_job(
        version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=2
    )
    chunks = JobChunk.objects.filter(job=job)
    wait_for(
        lambda: chunks.exclude(status="queued").exists(),
        timeout=90,
        what="a first chunk result",
        workers=celery_workers,
        interval=0.02,
    )
    celery_workers.kill_gpu()
    done_at_kill = retry_locked(lambda: chunks.exclude(status="queued").count())
    assert done_at_kill < chunks.count()  # killed mid-job
    celery_workers.start_gpu()
    # Redis keeps the killed worker's unacked message until its visibility timeout; resume
    # re-sends the chunks no queue and no worker has (those of the killed worker).
    retry_locked(lambda: services.resume_job(job, stale_after=timedelta(0)))
    wait_for(lambda: _job_done(job), timeout=240, what="the resumed job", workers=celery_workers)
    assert job.status == JobStatus.SUCCEEDED
    labels = Label.objects.filter(job=job)
    assert labels.count() == 32
    assert not labels.values("item", "side").annotate(n=Count("pk")).filter(n__gt=1).exists()
    assert job.done_a == job.done_b == 16  # counted once, however often a chunk was delivered


@pytest.mark.django_db(transaction=True)
def test_cancelled_job_stays_cancelled(celery_workers: Any, author: Any) -> None:
    """Results of the chunks in flight when a job is cancelled change nothing when they come."""
    version = make_version(author)
    # No model worker while the job starts: every chunk sent is still unscored at the cancel.
    celery_workers.stop_gpu()
    try:
        job = services.start_job(
            version=version,
            sample_set=make_sample_set(author, TEXTS * 2),
            sample_size=None,
            by=author,
            chunk_size=2,
        )
        in_flight = JobChunk.objects.filter(job=job, sent_at__isnull=False)
        wait_for(lambda: in_flight.exists(), timeout=60, what="chunks sent", workers=celery_workers)
        assert services.cancel_job(job)
    finally:
        celery_workers.start_gpu()
    sent = set(retry_locked(lambda: list(in_flight.values_list("pk", flat=True))))
    assert sent and not Label.objects.filter(job=job).exists()
    # A job started now queues behind the cancelled job's chunks on the model worker, and its
    # results behind theirs on the bookkeeping worker: each takes one message at a time, in
    # queue order. When it has finished, every result of the cancelled job has been handled.
    after = services.start_job(
        version=version,
        sample_set=make_sample_set(author, TEXTS[:2], name="After the cancel"),
        sample_size=None,
        by=author,
        chunk_size=2,
    )
    wait_for(lambda: _job_done(after), timeout=120, what="the next job", workers=celery_workers)
    assert after.status == JobStatus.SUCCEEDED, celery_workers.log_tail()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and (job.done_a, job.done_b) == (0, 0)
    assert not Label.objects.filter(job=job).exists()
    # Its chunks are as the cancel left them: none recorded, none sent after it.
    assert set(in_flight.values_list("pk", flat=True)) == sent
    assert not JobChunk.objects.filter(job=job).exclude(status=ChunkStatus.QUEUED).exists()
