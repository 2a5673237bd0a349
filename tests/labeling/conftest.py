"""Factories for sample sets and jobs, a deterministic fake scorer, and real Celery workers.

``celery_workers`` starts the real thing once per test session:

* PostgreSQL: Redis (``redis://127.0.0.1:6379/5``, flushed first) as the broker, the web-side
  worker (``celery -A cope_studio worker -Q default``) as a subprocess pointed at the pytest
  database through ``DATABASE_URL``, and the GPU-side worker
  (``celery -A worker.celery_app worker -Q gpu``, embedding backend) as a subprocess.
* SQLite: the pytest database is in memory, which no other process can open, so the web-side
  worker runs in a thread of the test process (``celery.contrib.testing``) and the broker is
  the filesystem transport in a temporary folder; the GPU worker is still a subprocess.

Tests that use it need ``transactional_db`` (the workers must see committed rows).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import POLICY_TEXT, TWIN_TEXT

REPO = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
REDIS_URL = os.environ.get("COPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
READY_TIMEOUT = 120.0


# Factories ---------------------------------------------------------------------------------


def make_version(author: Any, *, name: str = "Harassment", number: int = 1, twin: str = TWIN_TEXT):
    from policies.models import Policy, TwinOrigin, Version

    policy, _ = Policy.objects.get_or_create(name=name, defaults={"created_by": author})
    return Version.objects.create(
        policy=policy,
        number=number,
        text=POLICY_TEXT,
        twin_text=twin,
        twin_origin=TwinOrigin.HAND if twin else TwinOrigin.NONE,
        author=author,
    )


def make_sample_set(author: Any, texts: list[str], *, name: str = "Sample") -> Any:
    from labeling.importing import content_hash
    from labeling.models import Item, SampleSet

    sample_set = SampleSet.objects.create(
        name=name, source_format="pasted", item_count=len(texts), created_by=author
    )
    Item.objects.bulk_create(
        [
            Item(
                sample_set=sample_set,
                external_id=f"row-{i}",
                text=t,
                content_hash=content_hash(t),
                row_number=i,
            )
            for i, t in enumerate(texts, start=1)
        ]
    )
    return sample_set


def fake_label(text: str, side: str) -> tuple[int | None, float | None, str]:
    """Deterministic: "insult" → 1 on both sides; "borderline" → 1 under A only; "LONG" fails."""
    if "LONG" in text:
        return None, None, "over the token budget"
    if "insult" in text:
        return 1, 0.9, ""
    if "borderline" in text:
        return (1, 0.6, "") if side == "A" else (0, 0.4, "")
    return 0, 0.1, ""


def fake_result(request: dict[str, Any], *, error: str = "") -> dict[str, Any]:
    """The ScoreResult a worker would send for ``request``, from ``fake_label``."""
    from worker.contract import ScoreOutcome, ScoreRequest, ScoreResult, WorkerInfo

    req = ScoreRequest.from_dict(request)
    outcomes = (
        [] if error else [ScoreOutcome(i.item_id, *fake_label(i.text, req.side)) for i in req.items]
    )
    return ScoreResult(
        job_id=req.job_id,
        chunk_id=req.chunk_id,
        side=req.side,
        outcomes=outcomes,
        worker=WorkerInfo("fake", "tests/fake", "1", "cpu", weak=False),
        model_seconds=0.5,
        error=error,
    ).to_dict()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Score requests captured instead of sent to a broker."""
    from labeling import services

    requests: list[dict[str, Any]] = []
    monkeypatch.setattr(services, "send_score_request", requests.append)
    return requests


TEXTS = [
    "you are an insult to everyone, idiot",
    "I disagree with the paper's method",
    "borderline remark about someone",
    "nice weather today",
    "LONG " + "x" * 50,
    "another insult aimed at Sam",
    "borderline joke",
    "the committee's report was thorough",
]


# Real Celery workers -----------------------------------------------------------------------


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    host = s.get("HOST") or "127.0.0.1"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgresql://{auth}@{host}{port}/{s['NAME']}"


class CeleryWorkers:
    """The running workers; ``kill_gpu``/``start_gpu`` let a test crash and replace one."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._starts = 0

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self._starts += 1
        log = self.tmp / f"{name}-{self._starts}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            self.procs[name] = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.logs[name].read_text(errors="replace")
            if " ready." in text:
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"celery worker {name} exited:\n{text[-4000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"celery worker {name} not ready in {timeout}s:\n{text[-4000:]}")

    def start_gpu(self) -> None:
        argv = [CELERY, "-A", "worker.celery_app", "worker", "-Q", "gpu", "--pool", "solo"]
        argv += ["-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["-n", f"gpu{self._starts}@%h", "-l", "info"]
        env = {**self.env, "COPE_BACKEND": "embedding", "HF_HUB_OFFLINE": "1"}
        self._spawn("gpu", argv, env)
        self.wait_ready("gpu")

    def start_web(self) -> None:
        argv = [CELERY, "-A", "cope_studio", "worker", "-Q", "default", "--pool", "solo"]
        argv += ["-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["-n", "web@%h", "-l", "info"]
        self._spawn("web", argv, self.env)
        self.wait_ready("web")

    def kill_gpu(self) -> None:
        proc = self.procs["gpu"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {n} ---\n{p.read_text(errors='replace')[-3000:]}" for n, p in self.logs.items()
        )


def _point_app_at(app: Any, url: str, options: dict[str, Any]) -> Callable[[], None]:
    """Send this process's tasks to the test broker; returns the undo."""
    old = (app.conf.broker_url, app.conf.broker_transport_options)

    def reset_pool() -> None:
        from kombu import pools

        pools.reset()  # kombu keeps producer pools in a global registry
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url = url
    app.conf.broker_transport_options = options
    reset_pool()

    def undo() -> None:
        app.conf.broker_url, app.conf.broker_transport_options = old
        reset_pool()

    return undo


@pytest.fixture(scope="session")
def celery_workers(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorkers]:
    from django.db import connection

    from cope_studio.celery import app

    tmp = tmp_path_factory.mktemp("celery")
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "test"),
        "COPE_DATA_DIR": str(tmp / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    with django_db_blocker.unblock():
        vendor = connection.vendor
        database_url = _database_url() if vendor == "postgresql" else ""
    with ExitStack() as stack:
        if vendor == "postgresql":
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
            env.update(CELERY_BROKER_URL=REDIS_URL, DATABASE_URL=database_url)
            stack.callback(_point_app_at(app, REDIS_URL, {}))
        else:
            broker = tmp / "broker"
            options = {
                "data_folder_in": str(broker / "messages"),
                "data_folder_out": str(broker / "messages"),
                "control_folder": str(broker / "control"),
                "processed_folder": str(broker / "processed"),
                "store_processed": False,
            }
            for key in ("data_folder_in", "control_folder", "processed_folder"):
                Path(options[key]).mkdir(parents=True, exist_ok=True)
            env.update(CELERY_BROKER_URL="filesystem://", COPE_BROKER_DIR=str(broker))
            env.pop("DATABASE_URL", None)
            stack.callback(_point_app_at(app, "filesystem://", options))
        workers = CeleryWorkers(tmp, env)
        stack.callback(workers.stop)
        if vendor == "postgresql":
            workers.start_web()
        else:
            from celery.contrib.testing.worker import start_worker

            stack.enter_context(django_db_blocker.unblock())
            stack.enter_context(
                start_worker(
                    app, pool="solo", perform_ping_check=False, queues=["default"], loglevel="INFO"
                )
            )
        workers.start_gpu()
        yield workers


def retry_locked(fn: Callable[[], Any], attempts: int = 40) -> Any:
    """Run a query, retrying while SQLite's shared in-memory test database is locked by the
    web-side worker thread (shared-cache locks fail at once instead of waiting)."""
    from django.db import OperationalError

    for _ in range(attempts - 1):
        try:
            return fn()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    return fn()


def wait_for(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    workers: Any = None,
    interval: float = 0.25,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if retry_locked(predicate):
            return
        time.sleep(interval)
    tail = workers.log_tail() if workers is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")
