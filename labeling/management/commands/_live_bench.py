"""Shared by ``bench_try`` and ``bench_api``: a real model worker subprocess on a real broker,
and this process's Celery app pointed at it."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from kombu import pools

from cope_studio.celery import app
from worker.broker import TRANSPORT
from worker.config import WorkerConfig

REPO = Path(__file__).resolve().parents[3]
CELERY = str(Path(sys.executable).with_name("celery"))


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "p50_ms": round(pick(0.50) * 1000, 2),
        "p95_ms": round(pick(0.95) * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "n": len(ordered),
    }


class BrokerSetup:
    """A temporary broker (a filesystem folder, or a Redis database) with one model worker
    consuming ``gpu_live,gpu`` the way ``bin/run-studio`` starts it (prefork, one child)."""

    def __init__(self, kind: str, redis_url: str) -> None:
        self.kind = kind
        self.tmp = Path(tempfile.mkdtemp(prefix=f"cope-bench-{kind}-"))
        self.broker_dir = self.tmp / "broker"
        if kind == "redis":
            self.broker_url = self.result_backend = redis_url
        else:
            self.broker_url = "filesystem://"
            self.result_backend = f"file://{self.broker_dir / 'results'}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._undo: list[Any] = []

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": self.result_backend,
            "COPE_BROKER_DIR": str(self.broker_dir),
            "COPE_DATA_DIR": str(settings.DATA_DIR),  # the same SQLite file, if that is the DB
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
            "TOKENIZERS_PARALLELISM": "false",
        }
        return env

    def __enter__(self) -> BrokerSetup:
        if self.kind == "redis":
            redis.Redis.from_url(self.broker_url).flushdb()
        for name in ("messages", "control", "processed", "results"):
            (self.broker_dir / name).mkdir(parents=True, exist_ok=True)
        self.log = self.tmp / "worker.log"
        argv = [CELERY, "-A", "worker.celery_app", "worker", "-Q", "gpu_live,gpu"]
        argv += ["--concurrency", "1", "--prefetch-multiplier", "1", "--without-gossip"]
        argv += ["--without-mingle", "--without-heartbeat", "-n", f"bench-{self.kind}@%h"]
        argv += ["-l", "info"]  # "ready." is logged at info
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=self.env(), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while " ready." not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        self._point_app()
        return self

    def _point_app(self) -> None:
        old = (
            app.conf.broker_url,
            app.conf.broker_transport_options,
            app.conf.result_backend,
            app.conf.broker_transport,
        )
        options: dict[str, Any] = {}
        transport = None
        if self.kind != "redis":
            options = WorkerConfig(broker_dir=str(self.broker_dir)).filesystem_transport_options()
            transport = TRANSPORT  # as the settings choose it for the filesystem broker

        def apply(url: str, opts: dict[str, Any], backend: str, kind: str | None) -> None:
            app.conf.broker_url, app.conf.broker_transport_options = url, opts
            app.conf.result_backend = backend
            app.conf.broker_transport = kind
            pools.reset()  # type: ignore[no-untyped-call]  # kombu leaves it unannotated
            app._pool = None
            app.amqp._producer_pool = None
            app._backend_cache = None
            app._local = threading.local()

        apply(self.broker_url, options, self.result_backend, transport)
        self._undo.append(lambda: apply(*old))

    def __exit__(self, *exc: Any) -> None:
        for undo in reversed(self._undo):
            undo()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.kind == "redis":
            redis.Redis.from_url(self.broker_url).flushdb()
        shutil.rmtree(self.tmp, ignore_errors=True)
