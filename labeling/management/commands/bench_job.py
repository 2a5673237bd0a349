"""Measure a job through the real broker and real Celery workers: the web side's share.

``python manage.py bench_job --items 100000`` (PostgreSQL in ``DATABASE_URL``, Redis in
``CELERY_BROKER_URL`` or ``--broker``) creates a sample set and a policy version (the demo
harassment policy and its hand-written twin), starts two worker processes as ``bin/run-studio``
does (the bookkeeping worker on ``default``, the model worker from
``worker.celery_app.celery_worker_argv`` with the configured backend, the CPU embedding
baseline by default), starts the job as the web request does and waits for it to finish.
Prints one JSON object; everything it created is deleted afterwards (``--keep`` keeps it).

* ``web_seconds``: the bookkeeping worker's time in every task of the job (preparing it,
  sending chunks, recording each result with its commit, the final agreement and review tasks),
  summed from its log's "succeeded in" lines; ``web_share_of_model`` divides it by
  ``model_seconds`` (the scorer's own time, as the model worker reports it), and
  ``web_share_of_wall`` by the job's wall time. Target: under 5% of model time.
* ``start_ms``: the web request's part of starting the job (it returns before sampling).
* ``broker_peak_messages``: the most messages the ``gpu`` queue held at once (flow control).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.test import Client
from django.urls import reverse

from cope_studio.celery import app as celery_app
from labeling.jobs import services
from labeling.jobs.dispatch import ACTIVE
from labeling.models import Item, Job, SampleSet
from labeling.samples.values import content_hash
from policies.models import Policy, TwinOrigin, Version
from policies.roles import AUTHOR, ensure_roles

DEMO = Path(__file__).resolve().parents[3] / "cope_studio" / "demo"
REPO = Path(__file__).resolve().parents[3]
_SUCCEEDED = re.compile(r"Task (labeling\.\w+)\[[^\]]+\] succeeded in ([0-9.]+)s")


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += ":" + s["PASSWORD"]
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgresql://{auth}@{s.get('HOST') or '127.0.0.1'}{port}/{s['NAME']}"


def _report(job: Job, tmp: Path, *, start_ms: float, peak: int) -> dict[str, Any]:
    """The printed figures: the job's counters and the web side's share of model time."""
    web_seconds = sum(
        float(m.group(2))
        for m in _SUCCEEDED.finditer((tmp / "web.log").read_text(errors="replace"))
        if m.group(1) != "labeling.resume_stalled_jobs"
    )
    wall = (job.finished_at - job.created_at).total_seconds() if job.finished_at else None
    return {
        "items": job.item_count,
        "labels": job.done_a + job.done_b,
        "errors": job.errors_a + job.errors_b,
        "chunks": job.chunk_count * 2,
        "chunk_size": job.chunk_size,
        "chunks_in_flight": settings.COPE_CHUNKS_IN_FLIGHT,
        "status": job.status,
        "backend": job.backend,
        "model_id": job.model_id,
        "start_ms": round(start_ms, 1),
        "wall_seconds": round(wall, 2) if wall else None,
        "items_per_s": round(job.item_count / wall, 1) if wall else None,
        "model_seconds": round(job.model_seconds, 2),
        "web_seconds": round(web_seconds, 2),
        "web_share_of_model": round(web_seconds / job.model_seconds, 4)
        if job.model_seconds
        else None,
        "web_share_of_wall": round(web_seconds / wall, 4) if wall else None,
        "job_bookkeeping_seconds": round(job.bookkeeping_seconds, 2),
        "broker_peak_messages": peak,
        "agreement": job.stats.get("p_o"),
        "database": connection.vendor,
        "broker": "redis",
    }


class Command(BaseCommand):
    help = "Run a job through Redis and real Celery workers; print the web side's share."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=10000)
        parser.add_argument("--chunk-size", type=int, default=None)
        parser.add_argument("--broker", default="", help="default: CELERY_BROKER_URL")
        parser.add_argument("--timeout", type=float, default=3600.0)
        parser.add_argument("--keep", action="store_true", help="keep the job and its rows")
        parser.add_argument(
            "--start-only",
            action="store_true",
            help="time only the job-start request (the run form's POST, through the real view) "
            "on a set of --items items, five times, and cancel what it started",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        broker = options["broker"] or settings.CELERY_BROKER_URL
        if connection.vendor != "postgresql" or not broker.startswith("redis://"):
            raise CommandError(
                "bench_job measures the production shape: set DATABASE_URL to PostgreSQL and "
                "CELERY_BROKER_URL (or --broker) to Redis."
            )
        redis.Redis.from_url(broker).flushdb()
        celery_app.conf.broker_url = broker
        celery_app.conf.broker_transport_options = {}
        celery_app.conf.broker_transport = None  # the URL's (settings may name the filesystem one)
        version, sample_set, policy = self._data(options["items"])
        if options["start_only"]:
            try:
                self.stdout.write(json.dumps(self._start_requests(version, sample_set)))
            finally:
                Job.objects.filter(version=version).delete()
                sample_set.delete()
                policy.delete()
                redis.Redis.from_url(broker).flushdb()
            return
        tmp = Path(tempfile.mkdtemp(prefix="bench_job-"))
        procs = self._start_workers(tmp, broker)
        try:
            self._wait_ready(tmp, procs)
            started = time.perf_counter()
            job = services.start_job(
                version=version,
                sample_set=sample_set,
                sample_size=None,
                by=version.author,
                chunk_size=options["chunk_size"],
            )
            start_ms = (time.perf_counter() - started) * 1000
            peak = self._wait(job, broker, options["timeout"], procs, tmp)
            job = Job.objects.get(pk=job.pk)
        finally:
            for proc in procs:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, signal.SIGKILL)
        out = _report(job, tmp, start_ms=start_ms, peak=peak)
        if not options["keep"]:
            job.delete()
            sample_set.delete()
            policy.delete()
        self.stdout.write(json.dumps(out))

    def _start_workers(self, tmp: Path, broker: str) -> list[subprocess.Popen[bytes]]:
        """The bookkeeping worker on ``default`` and one model worker, as ``bin/run-studio``."""
        # Imported here: importing worker.celery_app creates the model worker's Celery app and
        # makes it this process's current app; only its command line is needed.
        from worker.celery_app import celery_worker_argv

        env = {**os.environ, "CELERY_BROKER_URL": broker, "DATABASE_URL": _database_url()}
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("COPE_DEVICE", "cpu")
        web = [sys.executable, "-m", "celery", "-A", "cope_studio", "worker", "-Q", "default"]
        web += ["--concurrency", "1", "-n", "bench-web@%h", "-l", "info"]
        gpu = [sys.executable, "-m", *celery_worker_argv(), "-n", "bench-gpu@%h"]
        procs = []
        for name, argv in (("web", web), ("gpu", gpu)):
            log = (tmp / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    argv,
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return procs

    def _start_requests(self, version: Version, sample_set: SampleSet) -> dict[str, Any]:
        """The run form's POST as an author sends it, timed over HTTP through the real view:
        what the person waits for before the job page (sampling and sending continue as tasks
        on the ``default`` queue, not run here)."""
        ensure_roles()
        version.author.groups.add(Group.objects.get(name=AUTHOR))
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(version.author)
        url = reverse("labeling:job_start", args=[version.pk])
        times = []
        for _ in range(5):
            started = time.perf_counter()
            response = client.post(url, {"sample_set": sample_set.pk})
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code not in (200, 302):
                raise CommandError(f"the run form answered {response.status_code}")
            for job in Job.objects.filter(version=version, status__in=ACTIVE):
                services.cancel_job(job)
        times.sort()
        return {
            "benchmark": "job_start_request",
            "items": sample_set.item_count,
            "requests": len(times),
            "p50_ms": round(times[len(times) // 2], 1),
            "max_ms": round(times[-1], 1),
            "database": connection.vendor,
            "broker": "redis",
        }

    def _data(self, n: int) -> tuple[Version, SampleSet, Policy]:
        with (DEMO / "samples" / "harassment-bullying.csv").open(encoding="utf-8") as fh:
            texts = [row["text"] for row in csv.DictReader(fh)]
        policy_a = (DEMO / "policies" / "harassment-bullying.md").read_text(encoding="utf-8")
        policy_b = (DEMO / "policies" / "harassment-bullying.twin.md").read_text(encoding="utf-8")
        user, _ = get_user_model().objects.get_or_create(username="bench-job")
        policy = Policy.objects.create(name=f"bench_job {time.time_ns()}", created_by=user)
        version = Version.objects.create(
            policy=policy,
            number=1,
            text=policy_a,
            twin_text=policy_b,
            twin_origin=TwinOrigin.HAND,
            author=user,
        )
        sample_set = SampleSet.objects.create(
            name="bench_job", source_format="pasted", item_count=n, created_by=user
        )
        items = []
        for i in range(n):
            text = f"{texts[i % len(texts)]} #{i}"  # the demo texts, numbered to be distinct
            items.append(
                Item(
                    sample_set=sample_set,
                    external_id=f"b-{i}",
                    text=text,
                    content_hash=content_hash(text),
                    row_number=i + 1,
                )
            )
        Item.objects.bulk_create(items, batch_size=5000)
        return version, sample_set, policy

    def _wait_ready(self, tmp: Path, procs: list[subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            logs = [(tmp / f"{n}.log").read_text(errors="replace") for n in ("web", "gpu")]
            if all(" ready." in log for log in logs):
                return
            if any(p.poll() is not None for p in procs):
                raise CommandError("a worker exited:\n" + "\n".join(log[-2000:] for log in logs))
            time.sleep(0.2)
        raise CommandError("the workers did not start within 300 s")

    def _wait_model(self, tmp: Path, timeout: float = 300) -> bool:
        """Wait until the model worker's process has loaded its model (its "loaded ... scorer"
        log line): a benchmark of one run then measures a warm worker, as a deployment has,
        not the model's load. False when the line did not come within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = (tmp / "gpu.log").read_text(errors="replace")
            if re.search(r"loaded \S+ scorer", log):
                return True
            time.sleep(0.2)
        return False

    def _wait(
        self,
        job: Job,
        broker: str,
        timeout: float,
        procs: list[subprocess.Popen[bytes]],
        tmp: Path,
    ) -> int:
        client = redis.Redis.from_url(broker)
        peak = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            peak = max(peak, int(client.llen("gpu")))
            status = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
            if status not in ACTIVE:
                return peak
            if any(p.poll() is not None for p in procs):
                raise CommandError(f"a worker exited; logs in {tmp}")
            time.sleep(0.5)
        raise CommandError(f"the job did not finish within {timeout:.0f} s; logs in {tmp}")
