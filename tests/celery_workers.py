"""Real Celery workers for tests, shared by every test directory (a plugin: tests/conftest.py
lists it in ``pytest_plugins``, so ``tests/labeling`` and ``tests/browser`` use one set).

``celery_workers`` starts the real thing once per test session:

* PostgreSQL: Redis (``COPE_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/5``, flushed
  first) as the broker, the web-side worker (``celery -A cope_studio worker -Q default``) as a
  subprocess pointed at the pytest database through ``DATABASE_URL``, and the GPU-side worker
  (``worker.celery_app.celery_worker_argv()``, the command ``bin/run-studio`` runs: prefork,
  one child, embedding backend) as a subprocess, through ``tests.model_worker``, which can give
  it a deterministic fake model instead (``COPE_TEST_FAKE_SCORER=1``).
* SQLite: the pytest database is in memory, which no other process can open, so the web-side
  worker runs in a thread of the test process (``celery.contrib.testing``) and the broker is
  the filesystem transport in a temporary folder; the GPU worker is still a subprocess.

The GPU worker writes twins through ``COPE_TWIN_BACKEND=openai`` against ``fake_llm``, a
loopback OpenAI-compatible server in this process: a worker loads its twin writer once, so a
test changes what the "model" answers (``twin_server``) rather than the worker's environment.
``start_gpu(extra_env=...)`` restarts-with-different-settings when a test needs that.

Tests that use the workers need ``transactional_db`` (the workers must see committed rows).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.worker.fake_openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]
CELERY = str(Path(sys.executable).with_name("celery"))
REDIS_URL = os.environ.get("COPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
READY_TIMEOUT = 120.0
FAKE_TWIN_MODEL = "fake-twin-writer"


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

    def __init__(
        self, tmp: Path, env: dict[str, str], gpu_env: Mapping[str, str], *, redis_url: str = ""
    ) -> None:
        self.tmp = tmp
        self.env = env
        self.redis_url = redis_url  # empty: the filesystem broker (SQLite runs)
        # Settings of the GPU worker on top of ``env``; every (re)start uses them.
        self.gpu_env: dict[str, str] = {
            "COPE_BACKEND": "embedding",
            "HF_HUB_OFFLINE": "1",
            **gpu_env,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._starts = 0

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self._starts += 1
        log = self.tmp / f"{name}-{self._starts}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            # Its own process group: a prefork pool's children are stopped with it.
            self.procs[name] = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.logs[name].read_text(errors="replace")
            if " ready." in text:
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"celery worker {name} exited:\n{text[-4000:]}")
            time.sleep(0.2)
        self._stop(self.procs[name])
        raise RuntimeError(f"celery worker {name} not ready in {timeout}s:\n{text[-4000:]}")

    def start_gpu(self, extra_env: Mapping[str, str] | None = None) -> None:
        """Start the GPU worker; ``extra_env`` changes its settings for this and later starts."""
        if "gpu" in self.procs and self.procs["gpu"].poll() is None:
            raise RuntimeError("a gpu worker is already running: kill_gpu() or stop_gpu() first")
        self.gpu_env.update(extra_env or {})
        from worker.celery_app import celery_worker_argv

        argv = [sys.executable, "-m", "tests.model_worker", *celery_worker_argv()[1:]]
        argv += ["--without-heartbeat", "-n", f"gpu{self._starts}@%h"]
        self._spawn("gpu", argv, {**self.env, **self.gpu_env})
        self.wait_ready("gpu")

    def start_web(self, *, beat: bool = False) -> None:
        """The bookkeeping worker; ``beat``: with Celery beat embedded, as ``bin/run-studio``."""
        argv = [CELERY, "-A", "cope_studio", "worker", "-Q", "default", "--pool", "solo"]
        argv += ["-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["-n", f"web{self._starts}@%h", "-l", "info"]
        if beat:
            argv += ["-B", "-s", str(self.tmp / f"beat-schedule-{self._starts}")]
        self._spawn("web", argv, self.env)
        self.wait_ready("web")

    def kill_gpu(self) -> None:
        """SIGKILL the model worker, its pool child with it."""
        proc = self.procs["gpu"]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def gpu_child_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.procs["gpu"].pid).children()]

    def stop_gpu(self) -> None:
        self._stop(self.procs["gpu"])

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        try:  # whatever of its process group is left (a pool child)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            self._stop(proc)

    def _queued_messages(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        return sum(client.llen(key) for key in client.scan_iter() if client.type(key) == b"list")

    def _workers_idle(self) -> bool:
        """Every running worker answers with nothing active and nothing reserved. A solo
        worker answers only between tasks, so a busy one is simply missing from the replies."""
        from cope_studio.celery import app

        running = sum(1 for proc in self.procs.values() if proc.poll() is None)
        inspect = app.control.inspect(timeout=1.0, limit=running)
        active, reserved = inspect.active() or {}, inspect.reserved() or {}
        replies = [active.get(name, [None]) + reserved.get(name, [None]) for name in active]
        return len(replies) >= running and not any(replies)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no message is queued and no worker is busy, twice in a row: a test's
        leftovers (a redelivered chunk, a late result) must not write while the database is
        flushed for the next test. Returns False, with a warning, if they never settle."""
        if not self.redis_url:
            return True
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            if self._queued_messages() == 0 and self._workers_idle():
                quiet += 1
                if quiet == 2:
                    return True
            else:
                quiet = 0
                time.sleep(0.1)
        warnings.warn(f"celery workers still busy after {timeout}s", stacklevel=2)
        return False

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {n} ---\n{p.read_text(errors='replace')[-3000:]}" for n, p in self.logs.items()
        )


def _transport_for(url: str) -> str | None:
    """The transport the settings pick for ``url``: the studio's own for the filesystem broker
    (worker.broker), else the URL's."""
    from worker.broker import TRANSPORT

    return TRANSPORT if url.startswith("filesystem:") else None


def _point_app_at(
    app: Any, url: str, options: dict[str, Any], result_backend: str = ""
) -> Callable[[], None]:
    """Send this process's tasks to the test broker (and read live answers from the workers'
    result backend); returns the undo."""
    old = (
        app.conf.broker_url,
        app.conf.broker_transport_options,
        app.conf.result_backend,
        app.conf.broker_transport,
    )

    def reset_pool() -> None:
        import threading

        from kombu import pools

        pools.reset()  # kombu keeps producer pools in a global registry
        app._pool = None
        app.amqp._producer_pool = None
        app._backend_cache = None  # the result backend, per thread or shared
        app._local = threading.local()

    app.conf.broker_url = url
    app.conf.broker_transport_options = options
    app.conf.result_backend = result_backend or old[2]
    app.conf.broker_transport = _transport_for(url)
    reset_pool()

    def undo() -> None:
        (
            app.conf.broker_url,
            app.conf.broker_transport_options,
            app.conf.result_backend,
            app.conf.broker_transport,
        ) = old
        reset_pool()

    return undo


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAIServer]:
    """The OpenAI-compatible server the session's GPU worker writes twins with."""
    from tests.conftest import TWIN_TEXT

    with FakeOpenAIServer(twin_text=TWIN_TEXT) as server:
        yield server


@pytest.fixture
def twin_server(fake_llm: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """``fake_llm`` answering with ``TWIN_TEXT`` and no recorded requests; set
    ``twin_server.state.twin_text`` to change what the "model" writes."""
    from tests.conftest import TWIN_TEXT

    with fake_llm.state.lock:
        fake_llm.state.twin_text = TWIN_TEXT
        fake_llm.state.requests.clear()
        fake_llm.state.failures.clear()
    yield fake_llm
    fake_llm.state.twin_text = TWIN_TEXT


@pytest.fixture(scope="session")
def celery_workers(
    django_db_setup: Any,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeOpenAIServer,
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
    gpu_env = {
        "COPE_TWIN_BACKEND": "openai",
        "COPE_TWIN_BASE_URL": fake_llm.url,
        "COPE_TWIN_OPENAI_MODEL": FAKE_TWIN_MODEL,
        "COPE_OPENAI_MAX_RETRIES": "1",
    }
    with django_db_blocker.unblock():
        vendor = connection.vendor
        database_url = _database_url() if vendor == "postgresql" else ""
    with ExitStack() as stack:
        if vendor == "postgresql":
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
            env.update(CELERY_BROKER_URL=REDIS_URL, DATABASE_URL=database_url)
            stack.callback(_point_app_at(app, REDIS_URL, {}, REDIS_URL))
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
            # Shared-cache SQLite fails a read at once while another thread writes: no heartbeat
            # writes behind the tests' backs (tests/labeling/workers/test_workers.py turns them on).
            gpu_env["COPE_HEARTBEAT_SECONDS"] = "0"
            env.pop("DATABASE_URL", None)
            (broker / "results").mkdir(parents=True, exist_ok=True)
            results = f"file://{broker / 'results'}"
            stack.callback(_point_app_at(app, "filesystem://", options, results))
        workers = CeleryWorkers(
            tmp, env, gpu_env, redis_url=REDIS_URL if vendor == "postgresql" else ""
        )
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


@pytest.fixture(autouse=True)
def _celery_workers_settle(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the workers, let them finish before the database is flushed
    (a worker writing during the flush's TRUNCATE deadlocks it and fails the next test)."""
    if "celery_workers" not in request.fixturenames:
        yield
        return
    # Set the database up inside this fixture, so that its flush is torn down after this waits.
    request.getfixturevalue("_django_db_helper")
    workers = request.getfixturevalue("celery_workers")
    yield
    workers.wait_idle()


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
