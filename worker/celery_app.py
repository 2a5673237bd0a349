"""The worker's Celery app: no Django, configured from ``WorkerConfig`` (the environment).

Start one worker process per GPU, consuming only the ``gpu`` queue; ``celery_worker_argv()``
returns the command line, the one entry point that ``bin/run-studio`` and docker compose use::

    celery -A worker.celery_app worker -Q gpu_live,gpu --concurrency 1 --prefetch-multiplier 1 \\
        --without-gossip --without-mingle -l info

Why this shape, so that a worker whose process dies comes back whatever the model's load time:

* The prefork pool with one child, not ``--pool solo``: the parent enforces the task time
  limits by replacing a stuck child, answers ``inspect`` while the child scores (the web side
  asks which chunks a worker holds before re-sending any), and replaces a child that dies.
* The model loads in the child, at ``worker_process_init``, never in the parent before the
  fork: CUDA cannot be used in a process forked after CUDA was initialised.
* A new child is up only once its model is loaded, and Celery kills a child not up within
  ``worker_proc_alive_timeout`` (4 s by default, less than any real model's load): it is set to
  ``COPE_MODEL_LOAD_TIMEOUT`` (30 minutes by default).
* Late acks with ``task_reject_on_worker_lost``: the chunk a dead child held goes back to the
  queue at once, and ``worker.tasks`` counts such deaths per chunk.

Bulk results never use a result backend: the worker sends them back as tasks by name to
``default`` (``labeling.record_chunk`` / ``policies.record_twin``), which the web side writes
idempotently. Only live requests (``worker.score_live``: Try and the API, on ``gpu_live``) and
``worker.describe`` store a result (Redis, or files next to the filesystem broker), which the web
side reads once and deletes.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from worker.config import WorkerConfig
from worker.contract import (
    DEFAULT_QUEUE,
    DESCRIBE_TASK,
    EXPLAIN_CHUNK_TASK,
    GENERATE_TWIN_TASK,
    GPU_QUEUE,
    LIVE_QUEUE,
    RECORD_CHUNK_TASK,
    RECORD_EXPLAIN_TASK,
    RECORD_TWIN_TASK,
    SCORE_CHUNK_TASK,
    SCORE_LIVE_TASK,
)
from worker.contract_llm import (
    PROBE_LLM_TASK,
    RECORD_PROBE_LLM_TASK,
    RECORD_SUGGEST_TASK,
    SUGGEST_TASK,
)

TASK_ROUTES: dict[str, dict[str, str]] = {
    SCORE_CHUNK_TASK: {"queue": GPU_QUEUE},
    GENERATE_TWIN_TASK: {"queue": GPU_QUEUE},
    DESCRIBE_TASK: {"queue": GPU_QUEUE},
    EXPLAIN_CHUNK_TASK: {"queue": GPU_QUEUE},
    PROBE_LLM_TASK: {"queue": GPU_QUEUE},
    SUGGEST_TASK: {"queue": GPU_QUEUE},
    RECORD_CHUNK_TASK: {"queue": DEFAULT_QUEUE},
    RECORD_EXPLAIN_TASK: {"queue": DEFAULT_QUEUE},
    RECORD_PROBE_LLM_TASK: {"queue": DEFAULT_QUEUE},
    RECORD_SUGGEST_TASK: {"queue": DEFAULT_QUEUE},
    RECORD_TWIN_TASK: {"queue": DEFAULT_QUEUE},
    SCORE_LIVE_TASK: {"queue": LIVE_QUEUE},  # Consumed before GPU_QUEUE
}
# The queues a model worker consumes, in the order it looks at them (-Q).
WORKER_QUEUES = f"{LIVE_QUEUE},{GPU_QUEUE}"


def celery_settings(config: WorkerConfig) -> dict[str, Any]:
    """Celery settings for the worker (and for a test or tool that talks to it)."""
    transport_options: dict[str, Any] = {}
    if config.uses_filesystem_broker:
        transport_options = config.filesystem_transport_options()
    elif config.broker_url.startswith(("redis://", "rediss://", "sentinel://")):
        # With late acks an unacked task is redelivered after the visibility timeout: keep it
        # above the hard time limit so a long chunk is not handed to a second worker.
        transport_options = {"visibility_timeout": max(3600, 2 * config.task_time_limit)}
        # Look at the queues in -Q order (gpu_live first), not in turns.
        transport_options["queue_order_strategy"] = "priority"
    result_backend = config.effective_result_backend()
    if result_backend and result_backend.startswith("file://"):
        from pathlib import Path

        Path(result_backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "broker_url": config.broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "result_backend": result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": config.task_soft_time_limit,
        "task_time_limit": config.task_time_limit,
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": TASK_ROUTES,
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_proc_alive_timeout": float(config.model_load_timeout),
    }
    if config.uses_filesystem_broker:
        from worker.broker import TRANSPORT

        settings["broker_transport"] = TRANSPORT  # Strict queue order (gpu_live first)
    return settings


def make_app(config: WorkerConfig | None = None) -> Celery:
    config = WorkerConfig.from_env() if config is None else config
    app = Celery("cope_worker", include=["worker.tasks", "worker.live"])
    app.conf.update(celery_settings(config))
    app.cope_config = config  # what the tasks in this process run with
    return app


def celery_worker_argv(*, solo: bool = False, loglevel: str = "info") -> list[str]:
    """The command line of one GPU worker (see the module docstring). ``solo`` is for tools
    that need the model in the worker's own process; it gives up the time limits."""
    argv = [
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        WORKER_QUEUES,
        "--concurrency",
        "1",
        "--prefetch-multiplier",
        "1",
        "--without-gossip",
        "--without-mingle",
        "-l",
        loglevel,
    ]
    if solo:
        argv += ["--pool", "solo"]
    return argv


app = make_app()
