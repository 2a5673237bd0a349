"""Fault tests: real PostgreSQL, a Redis of the test's own, the bookkeeping worker with Celery
beat embedded (as ``bin/run-studio`` runs it) and the model worker started as ``bin/run-studio``
starts it (``celery_worker_argv``: prefork, one child, model loaded in the child), with a
deterministic fake model (``tests.model_worker``). Each fault hits a small job mid-way; each
test ends with exactly one label per (item, side) and the agreement the fake model implies.

Short intervals: beat looks for lost chunks every 2 s and a chunk counts as lost 3 s after its
send when no queue and no model worker has it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from labeling.jobs import services
from labeling.models import ChunkStatus, Job, JobChunk, JobStatus, Label
from tests.celery_workers import CeleryWorkers, _database_url, _point_app_at, wait_for
from tests.labeling.conftest import make_sample_set, make_version
from tests.model_worker import fake_p1

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

PORTS = range(17400, 17500)
ITEMS = 40
CHUNK = 4  # 10 chunks per side
JOB_TIMEOUT = 150


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 17400-17499")


class Faults:
    """A Redis of this test's own plus the workers, and the faults to inflict on them."""

    def __init__(self, tmp: Path, workers: CeleryWorkers, port: int) -> None:
        self.tmp = tmp
        self.workers = workers
        self.port = port
        self.redis: subprocess.Popen[bytes] | None = None

    def start_redis(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.tmp)]
        self.redis = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait(timeout=10)

    def queue_length(self, queue: str) -> int:
        import redis

        return int(redis.Redis(port=self.port).llen(queue))

    def stop(self) -> None:
        # The test is over: no graceful shutdown to wait for, SIGKILL every process group.
        for proc in [*self.workers.procs.values(), self.redis]:
            if proc is not None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait(timeout=10)
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(timeout=10)


@pytest.fixture
def faults(tmp_path: Path, django_db_blocker: Any) -> Iterator[Faults]:
    from cope_studio.celery import app

    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with django_db_blocker.unblock():
        database_url = _database_url()
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "test"),
        "COPE_DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
        "CELERY_BROKER_URL": url,
        "DATABASE_URL": database_url,
        "COPE_RESUME_EVERY_SECONDS": "2",
        "COPE_RESEND_GRACE_SECONDS": "3",
        "COPE_CHUNKS_IN_FLIGHT": "3",
    }
    gpu_env = {
        "COPE_TEST_FAKE_SCORER": "1",
        "COPE_TEST_FAKE_SECONDS_PER_ITEM": "0.05",
        "COPE_TEST_FAKE_LOAD_SECONDS": "0",
    }
    undo = _point_app_at(app, url, {})
    fault = Faults(tmp_path, CeleryWorkers(tmp_path, env, gpu_env, redis_url=url), port)
    try:
        fault.start_redis()
        yield fault
    finally:
        fault.stop()
        undo()


def _texts() -> list[str]:
    return [
        f"Item {i}: {'you absolute idiot' if i % 3 == 0 else 'lovely day'} #{i}"
        for i in range(ITEMS)
    ]


def _start(author: Any) -> Job:
    version = make_version(author)
    sample_set = make_sample_set(author, _texts())
    return services.start_job(
        version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=CHUNK
    )


def _chunks_done(job: Job) -> int:
    return JobChunk.objects.filter(job=job, status=ChunkStatus.DONE).count()


def _wait_chunks_done(job: Job, n: int, faults: Faults) -> None:
    wait_for(
        lambda: _chunks_done(job) >= n,
        timeout=60,
        what=f"{n} chunks done",
        workers=faults.workers,
        interval=0.05,
    )


def _finishes_with_every_label_once(job: Job, faults: Faults) -> None:
    def finished() -> bool:
        job.refresh_from_db()
        return not job.is_active

    wait_for(finished, timeout=JOB_TIMEOUT, what="the job to finish", workers=faults.workers)
    assert job.status == JobStatus.SUCCEEDED, faults.workers.log_tail()
    labels = Label.objects.filter(job=job)
    assert labels.count() == 2 * ITEMS and not labels.filter(label__isnull=True).exists()
    assert job.done_a == job.done_b == ITEMS and job.errors_a == job.errors_b == 0
    expected = {"a1b1": 0, "a1b0": 0, "a0b1": 0, "a0b0": 0}
    for item in job.sample_set.items.all():
        la = int(fake_p1(job.text_a, item.text) >= 0.5)
        lb = int(fake_p1(job.text_b, item.text) >= 0.5)
        expected[f"a{la}b{lb}"] += 1
        got = dict(labels.filter(item=item).values_list("side", "label"))
        assert got == {"A": la, "B": lb}
    assert job.stats["confusion"] == expected
    assert job.stats["agree"] == expected["a1b1"] + expected["a0b0"]


def test_model_worker_sigkilled_mid_job(faults: Faults, author: Any) -> None:
    faults.workers.start_web(beat=True)
    faults.workers.start_gpu()
    job = _start(author)
    _wait_chunks_done(job, 3, faults)
    faults.workers.kill_gpu()  # the worker and its pool child, at once
    assert _chunks_done(job) < 2 * ITEMS // CHUNK
    faults.workers.start_gpu()
    _finishes_with_every_label_once(job, faults)


def test_pool_child_sigkilled_mid_job_with_a_slow_loading_model(
    faults: Faults, author: Any
) -> None:
    # 8 s to load, twice Celery's default worker_proc_alive_timeout: without the worker's own
    # setting, the new child is killed while loading, again and again, and the job never ends.
    faults.workers.start_web(beat=True)
    faults.workers.start_gpu({"COPE_TEST_FAKE_LOAD_SECONDS": "8"})
    job = _start(author)
    _wait_chunks_done(job, 3, faults)
    main = faults.workers.procs["gpu"]
    [child] = faults.workers.gpu_child_pids()
    os.kill(child, signal.SIGKILL)
    _finishes_with_every_label_once(job, faults)
    assert main.poll() is None  # the same worker, with a new child
    assert faults.workers.gpu_child_pids() and faults.workers.gpu_child_pids() != [child]
    log = faults.workers.logs["gpu"].read_text(errors="replace")
    assert "Timed out waiting for UP message" not in log


def test_broker_killed_and_restarted_empty_mid_job(faults: Faults, author: Any) -> None:
    faults.workers.start_web(beat=True)
    faults.workers.start_gpu()
    job = _start(author)
    _wait_chunks_done(job, 3, faults)
    faults.kill_redis()  # every queued message and result is gone
    time.sleep(1)
    faults.start_redis()
    _finishes_with_every_label_once(job, faults)


def test_database_connections_terminated_mid_chunk(faults: Faults, author: Any) -> None:
    faults.workers.start_web(beat=True)
    faults.workers.start_gpu()
    job = _start(author)
    _wait_chunks_done(job, 2, faults)
    terminated = 0
    deadline = time.monotonic() + 6
    with connection.cursor() as cursor:
        while time.monotonic() < deadline and _chunks_done(job) < 2 * ITEMS // CHUNK:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            terminated += cursor.fetchone()[0]
            time.sleep(0.3)
    assert terminated > 0
    _finishes_with_every_label_once(job, faults)


def test_no_model_worker_longer_than_the_resend_interval_then_one_appears(
    faults: Faults, author: Any
) -> None:
    faults.workers.start_web(beat=True)
    job = _start(author)
    in_flight = JobChunk.objects.filter(job=job, status=ChunkStatus.QUEUED, sent_at__isnull=False)
    wait_for(lambda: in_flight.count() == 3, timeout=30, what="the first chunks sent")
    time.sleep(10)  # several beat ticks, each more than the grace after the sends
    # Nothing piled up, no send counted: the chunks wait in the queue for a worker.
    assert faults.queue_length("gpu") == 3
    assert set(in_flight.values_list("attempts", flat=True)) == {1}
    assert not JobChunk.objects.filter(job=job, status=ChunkStatus.FAILED).exists()
    faults.workers.start_gpu()
    _finishes_with_every_label_once(job, faults)
    assert set(JobChunk.objects.filter(job=job).values_list("attempts", flat=True)) == {1}
