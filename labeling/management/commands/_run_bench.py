"""What the benchmarks of one run (``bench_explain``, ``bench_probe``, ``bench_whatif``) share:
the production shape they insist on (PostgreSQL and Redis), and the live workers they start
before the run and stop after it (``bench_job``'s bookkeeping and model workers, the model
loaded before the clock starts, as a deployment's workers are warm)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.db import connection

from cope_studio.celery import app as celery_app
from labeling.management.commands.bench_job import _SUCCEEDED
from labeling.management.commands.bench_job import Command as JobBench
from labeling.models import ExplainRun
from worker.contract import RECORD_EXPLAIN_TASK


def add_run_arguments(parser: CommandParser, *, keeps: str) -> None:
    """``--broker``, ``--timeout`` and ``--keep`` (``keeps``: what it keeps)."""
    parser.add_argument("--broker", default="", help="default: CELERY_BROKER_URL")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--keep", action="store_true", help=f"keep {keeps}")


def production_broker(name: str, options: dict[str, Any]) -> str:
    """The Redis broker to use, with this process's Celery app pointed at it; refuses anything
    but PostgreSQL and Redis (the shape these figures are about)."""
    broker = str(options["broker"] or settings.CELERY_BROKER_URL)
    if connection.vendor != "postgresql" or not broker.startswith("redis://"):
        raise CommandError(
            f"{name} measures the production shape: set DATABASE_URL to PostgreSQL "
            "and CELERY_BROKER_URL (or --broker) to Redis."
        )
    celery_app.conf.broker_url = broker
    celery_app.conf.broker_transport_options = {}
    celery_app.conf.broker_transport = None
    return broker


@contextmanager
def live_workers(
    name: str, broker: str, stderr: TextIO | Any
) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    """The workers started, ready and with the model loaded; stopped on the way out. Yields
    the folder of their logs and their processes."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    jobs = JobBench()
    procs = jobs._start_workers(tmp, broker)
    try:
        jobs._wait_ready(tmp, procs)
        if not jobs._wait_model(tmp):
            stderr.write("the model worker did not log its model loaded; measuring anyway")
        yield tmp, procs
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)


def log_size(tmp: Path) -> int:
    """How much the bookkeeping worker has logged so far (characters): where the next run's
    tasks begin."""
    return len((tmp / "web.log").read_text(errors="replace"))


def wait_for_log(run: ExplainRun, tmp: Path, log_from: int, timeout: float = 5.0) -> int:
    """Wait until the bookkeeping worker has logged a finished ``record_explain`` task for each
    of the finished run's chunks (Celery logs a task after it returns, a moment after the run's
    row says finished), so that no task of this run is counted with the next one. Returns how
    many it logged: fewer when other workers on the same broker took some (the figures then
    say so, ``bookkeeping_tasks_logged``)."""
    deadline = time.monotonic() + timeout
    while True:
        done = len(_record_explain_seconds(tmp, log_from))
        if done >= run.chunk_count or time.monotonic() >= deadline:
            return done
        time.sleep(0.1)


def _record_explain_seconds(tmp: Path, log_from: int) -> list[float]:
    """Each finished ``record_explain`` task's time in the bookkeeping worker's log, from
    character ``log_from`` on."""
    log = (tmp / "web.log").read_text(errors="replace")[log_from:]
    return [
        float(m.group(2)) for m in _SUCCEEDED.finditer(log) if m.group(1) == RECORD_EXPLAIN_TASK
    ]


def run_figures(run: ExplainRun, tmp: Path, log_from: int = 0) -> dict[str, Any]:
    """A finished run's figures: size, wall time, scores per second, the model worker's time,
    and the bookkeeping worker's (its ``labeling.record_explain`` tasks, from its log from
    character ``log_from`` on: ``log_size``) beside the model's and the wall's."""
    web_seconds = sum(_record_explain_seconds(tmp, log_from))
    wall = (run.finished_at - run.created_at).total_seconds() if run.finished_at else None
    busy = web_seconds + run.model_seconds
    return {
        "status": run.status,
        "variants": run.variants,
        "scores": run.scores,
        "chunks": run.chunk_count,
        "chunk_size": run.chunk_size,
        "chunks_in_flight": settings.COPE_CHUNKS_IN_FLIGHT,
        "backend": run.backend,
        "wall_seconds": round(wall, 2) if wall else None,
        "scores_per_s": round(run.scores / wall, 1) if wall else None,
        "model_seconds": round(run.model_seconds, 2),
        "web_seconds": round(web_seconds, 2),
        "outside_model_share": round(web_seconds / busy, 4) if busy else None,
        "web_share_of_wall": round(web_seconds / wall, 4) if wall else None,
        "run_bookkeeping_seconds": round(run.bookkeeping_seconds, 2),
    }
