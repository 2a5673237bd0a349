"""Model worker heartbeats: every ``COPE_HEARTBEAT_SECONDS`` (10 s; 0 turns them off) the process
that runs the model sends a ``Heartbeat`` (host, backend, model id and revision, device, memory in
use, the job it is working on) as a task on the ``default`` queue, like a result; the bookkeeping
side stores it (``labeling.workers``) for the Workers page. Workers need no database credentials
for that.

One sender thread per process that runs tasks: the pool child of a prefork worker (started at
``worker_process_init``, before the model preload, so a model that loads for minutes is seen as
``starting``), or the worker process itself for the solo and thread pools (``worker_ready``). It
stops at shutdown and sends a last ``stopped`` heartbeat, so a worker that stops cleanly is not
taken for a lost one. ``worker.tasks`` imports this module first, which connects the signals.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from celery.signals import (
    celeryd_init,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from worker.celery_app import app
from worker.config import WorkerConfig
from worker.contract import (
    DEFAULT_QUEUE,
    EXPLAIN_CHUNK_TASK,
    GENERATE_TWIN_TASK,
    RECORD_HEARTBEAT_TASK,
    SCORE_CHUNK_TASK,
    Heartbeat,
)

log = logging.getLogger(__name__)

# The model tasks a heartbeat names while they run (the worker is busy, not idle).
_REPORTED_TASKS = (SCORE_CHUNK_TASK, EXPLAIN_CHUNK_TASK, GENERATE_TWIN_TASK)
_node_name = ""  # the Celery node name, set in the main process; pool children inherit it


class _Current:
    """The task this process is running, as the heartbeat reports it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.task = ""
        self.job_id: int | None = None
        self.chunk_id: int | None = None
        self.side = ""

    def set(self, task_name: str, args: Any) -> None:
        request = args[0] if isinstance(args, list | tuple) and args else None
        with self.lock:
            self.task = task_name
            self.job_id = self.chunk_id = None
            self.side = ""
            if task_name in (SCORE_CHUNK_TASK, EXPLAIN_CHUNK_TASK) and isinstance(request, dict):
                try:
                    # An explain chunk belongs to an explain run, not a job: no job or side.
                    if task_name == SCORE_CHUNK_TASK:
                        self.job_id = int(request["job_id"])
                        self.side = str(request.get("side", ""))
                    self.chunk_id = int(request["chunk_id"])
                except (KeyError, TypeError, ValueError):
                    pass

    def clear(self) -> None:
        with self.lock:
            self.task, self.job_id, self.chunk_id, self.side = "", None, None, ""


current = _Current()


def memory_in_use() -> tuple[int | None, str]:
    """GPU memory torch holds (CUDA workers), else this process's resident memory."""
    torch = sys.modules.get("torch")  # never import torch just for this
    if torch is not None:
        try:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                return int(torch.cuda.memory_reserved()), "gpu"
        except Exception:  # a broken CUDA context must not stop the heartbeat
            pass
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE"), "rss"
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss"


def build(state: str | None = None) -> Heartbeat:
    """This process's heartbeat now; ``state`` overrides the one derived from the model."""
    config = app.cope_config
    assert isinstance(config, WorkerConfig)
    backend, model_id, revision, device, weak, error = config.backend, "", "", "", False, ""
    loaded = "starting"
    models = getattr(sys.modules.get("worker.tasks"), "models", None)
    scorer = getattr(models, "scorer", None)
    scorer_error = getattr(models, "scorer_error", None)
    if scorer is not None:
        info = scorer.info
        backend, model_id, revision = info.backend, info.model_id, info.model_revision
        device, weak, loaded = info.device, info.weak, "ready"
    elif scorer_error is not None:
        loaded, error = "error", str(scorer_error)
    with current.lock:
        task, job_id, chunk_id, side = current.task, current.job_id, current.chunk_id, current.side
    if state is None:
        state = "busy" if task and loaded == "ready" else loaded
    memory, kind = memory_in_use()
    queues = sorted(getattr(app.amqp.queues, "consume_from", None) or {})
    return Heartbeat(
        name=_node_name or f"{socket.gethostname()}-{os.getpid()}",
        hostname=socket.gethostname(),
        pid=os.getpid(),
        queues=queues,
        state=state,
        backend=backend,
        model_id=model_id,
        model_revision=revision,
        device=device,
        memory_bytes=memory,
        memory_kind=kind,
        job_id=job_id,
        chunk_id=chunk_id,
        side=side,
        task=task,
        error=error[:2000],
        sent_at=time.time(),
        weak=weak,
    )


def send(beat: Heartbeat, *, interval: float, retry: bool = True) -> None:
    app.send_task(
        RECORD_HEARTBEAT_TASK,
        args=[beat.to_dict()],
        queue=DEFAULT_QUEUE,
        # A heartbeat nobody read in time is worthless: let the broker drop it.
        expires=max(60.0, 6 * interval),
        retry=retry,
    )


class Sender:
    """The sending thread of one process."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cope-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                send(build(), interval=self.interval)
                _touch_health_file()
            except Exception:  # the broker may be down for a while; keep trying
                log.warning("heartbeat not sent", exc_info=True)
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        try:
            send(build(state="stopped"), interval=self.interval, retry=False)
        except Exception:
            log.warning("last heartbeat not sent", exc_info=True)


def _touch_health_file() -> None:
    config = app.cope_config
    assert isinstance(config, WorkerConfig)
    if config.heartbeat_file:
        Path(config.heartbeat_file).write_text(f"{time.time():.0f}\n", encoding="ascii")


def healthy(config: WorkerConfig, *, now: float | None = None) -> tuple[bool, str]:
    """For a container health check: a heartbeat went out recently from this host.

    The file is touched only after a heartbeat reached the broker, so a worker that hangs, lost
    its broker, or never started its sender is unhealthy.
    """
    if not config.heartbeat_file:
        return False, "COPE_HEARTBEAT_FILE is not set: there is nothing to check."
    if config.heartbeat_seconds <= 0:
        return False, "COPE_HEARTBEAT_SECONDS=0: this worker sends no heartbeats."
    try:
        age = (now or time.time()) - Path(config.heartbeat_file).stat().st_mtime
    except OSError:
        return False, f"no heartbeat sent yet ({config.heartbeat_file} does not exist)."
    limit = max(90.0, 3 * config.heartbeat_seconds)
    if age > limit:
        return False, f"the last heartbeat went out {age:.0f}s ago (limit {limit:.0f}s)."
    return True, f"last heartbeat {age:.0f}s ago."


_sender: Sender | None = None
_sender_lock = threading.Lock()


def start() -> None:
    """Start this process's sender (once); nothing when ``COPE_HEARTBEAT_SECONDS=0``."""
    global _sender
    config = app.cope_config
    assert isinstance(config, WorkerConfig)
    if config.heartbeat_seconds <= 0:
        return
    with _sender_lock:
        if _sender is None or _sender.stopping.is_set():
            _sender = Sender(config.heartbeat_seconds)
            _sender.start()


def stop() -> None:
    global _sender
    with _sender_lock:
        sender, _sender = _sender, None
    if sender is not None:
        sender.stop()


@celeryd_init.connect  # type: ignore[untyped-decorator]
def _remember_node_name(sender: Any = None, **_: Any) -> None:
    global _node_name
    _node_name = str(sender or "")


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _start_in_child(**_: Any) -> None:
    start()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_in_solo_worker(sender: Any = None, **_: Any) -> None:
    # The solo and thread pools run tasks in this process (no worker_process_init).
    if type(getattr(sender, "pool", None)).__module__.endswith(("solo", "thread")):
        start()


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_in_child(**_: Any) -> None:
    stop()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_in_worker(**_: Any) -> None:
    stop()


@task_prerun.connect  # type: ignore[untyped-decorator]
def _task_started(task: Any = None, args: Any = None, **_: Any) -> None:
    name = getattr(task, "name", "")
    if name in _REPORTED_TASKS:
        current.set(name, args)


@task_postrun.connect  # type: ignore[untyped-decorator]
def _task_finished(task: Any = None, **_: Any) -> None:
    if getattr(task, "name", "") in _REPORTED_TASKS:
        current.clear()
