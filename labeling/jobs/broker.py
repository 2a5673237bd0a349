"""The jobs' side of the broker: what is sent to it, and what it and the workers hold.

Sending: ``send_score_request`` hands a chunk to the model workers on the ``gpu`` queue and
``send_prepare_job`` queues a job's preparation on ``default``. Every send of the jobs package
goes through these two, so a test replaces them here to capture or run what would be sent.

Looking: ``look()`` says what the broker and the model workers hold right now, for telling
lost chunks from slow ones. A chunk sent to the model workers is somewhere: waiting in the
``gpu`` queue, held by a model worker (prefetched or being scored), its result waiting in the
``default`` queue, or lost (a broker restarted empty, a worker killed outright). ``look()``
answers the first three for every chunk at once. With flow control only a few chunks per job
are out, so the queues are short and reading them is cheap.

Queues are read on Redis and on the filesystem transport; the workers are asked over Celery's
broadcast (``inspect``). Whatever cannot be read is ``None`` (unknown), and the caller falls
back to waiting out the task time limit.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cope_studio.celery import app as celery_app
from worker.contract import DEFAULT_QUEUE, GPU_QUEUE, SCORE_CHUNK_TASK

log = logging.getLogger(__name__)

INSPECT_TIMEOUT = 1.0
PREPARE_JOB_TASK = "labeling.prepare_job"


def send_score_request(request: dict[str, Any]) -> None:
    """Hand one chunk (a ``ScoreRequest`` as a dict) to the model workers."""
    celery_app.send_task(SCORE_CHUNK_TASK, args=[request], queue=GPU_QUEUE)


def send_prepare_job(job_id: int) -> None:
    """Queue ``prepare_job`` on ``default``."""
    celery_app.send_task(PREPARE_JOB_TASK, args=[job_id], queue=DEFAULT_QUEUE)


@dataclass(frozen=True)
class BrokerView:
    # Chunk ids with a message in the gpu queue or a result in the default queue.
    queued: frozenset[int] | None
    # Chunk ids a model worker holds (reserved or being scored).
    held: frozenset[int] | None
    # Workers consuming the gpu queue that answered.
    model_workers: int | None


def job_chunk_id(args: Any) -> int | None:
    """The job chunk id of a task's arguments when they are a score request or its result.
    An explain chunk (``run_id``) is not a job chunk: the two count their ids apart."""
    if isinstance(args, list | tuple) and args and isinstance(args[0], dict):
        first = args[0]
        if "chunk_id" in first and "run_id" not in first:
            try:
                return int(first["chunk_id"])
            except (TypeError, ValueError):
                return None
    return None


# Reads a chunk id from a task's arguments, or None when they are not that kind of chunk (job
# chunks here; explain chunks in ``labeling.explain.broker``).
ChunkIdReader = Callable[[Any], "int | None"]


def _chunk_id(raw: bytes | str, chunk_of: ChunkIdReader = job_chunk_id) -> int | None:
    """The chunk id of a kombu message envelope carrying a request or its result."""
    try:
        envelope = json.loads(raw)
        body: Any = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return chunk_of(json.loads(body)[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _redis_messages(channel: Any, queue: str) -> list[bytes]:
    client = channel.client
    keys = [channel._q_for_pri(queue, pri) for pri in channel.priority_steps]
    messages: list[bytes] = []
    for key in dict.fromkeys(keys):
        messages += client.lrange(key, 0, -1)
    return messages


def _filesystem_messages(channel: Any, queue: str) -> list[bytes]:
    folder = Path(channel.data_folder_in)
    messages = []
    for path in folder.glob(f"*.{queue}.msg"):
        if path.name.startswith("."):  # still being written (worker.broker)
            continue
        try:
            messages.append(path.read_bytes())
        except OSError:  # consumed meanwhile
            continue
    return messages


def queued_chunks(app: Any, chunk_of: ChunkIdReader = job_chunk_id) -> frozenset[int] | None:
    """Chunk ids waiting in the ``gpu`` queue, or whose result waits in ``default``."""
    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            transport = conn.transport.driver_type
            if transport == "redis":
                read = _redis_messages
            elif transport == "filesystem":
                read = _filesystem_messages
            else:
                return None
            ids = set()
            for queue in (GPU_QUEUE, DEFAULT_QUEUE):
                for raw in read(channel, queue):
                    chunk_id = _chunk_id(raw, chunk_of)
                    if chunk_id is not None:
                        ids.add(chunk_id)
            return frozenset(ids)
    except Exception:
        log.warning("could not read the queues", exc_info=True)
        return None


def held_chunks(
    app: Any, chunk_of: ChunkIdReader = job_chunk_id
) -> tuple[frozenset[int] | None, int | None]:
    """(chunk ids the model workers hold, how many model workers answered)."""
    try:
        queues = app.control.inspect(timeout=INSPECT_TIMEOUT).active_queues() or {}
        nodes = [node for node, qs in queues.items() if any(q.get("name") == GPU_QUEUE for q in qs)]
        if not nodes:
            return frozenset(), 0
        inspect = app.control.inspect(destination=nodes, timeout=INSPECT_TIMEOUT, limit=len(nodes))
        ids = set()
        for replies in (inspect.active() or {}, inspect.reserved() or {}):
            for requests in replies.values():
                for request in requests:
                    chunk_id = chunk_of(request.get("args"))
                    if chunk_id is not None:
                        ids.add(chunk_id)
        return frozenset(ids), len(nodes)
    except Exception:
        log.warning("could not ask the workers what they hold", exc_info=True)
        return None, None


def look(chunk_of: ChunkIdReader = job_chunk_id) -> BrokerView:
    """Queues, then workers, then queues again: a chunk that moves on while we look (queue →
    worker → result queue → database) is seen at one of these steps, so only a chunk that is
    nowhere counts as lost. Read the database's chunks in flight after this. ``chunk_of`` picks
    the kind of chunk (job chunks by default)."""
    before = queued_chunks(celery_app, chunk_of)
    held, workers = held_chunks(celery_app, chunk_of)
    after = queued_chunks(celery_app, chunk_of)
    queued = None if before is None or after is None else before | after
    return BrokerView(queued=queued, held=held, model_workers=workers)
