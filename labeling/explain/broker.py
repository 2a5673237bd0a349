"""The explain runs' side of the broker: sending a chunk, and which chunks it and the workers hold.

``send_explain_request`` is the one place an explain chunk goes to the model workers (tests
replace it here). ``look`` answers, like ``labeling.jobs.broker.look``, which explain chunks
wait in the queues or are held by a model worker; an explain message is told from a job's by the
``run_id`` its request and its result carry (chunk ids of the two kinds are separate sequences).
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from cope_studio.celery import app as celery_app
from labeling.jobs.broker import INSPECT_TIMEOUT, BrokerView
from labeling.jobs.broker import _filesystem_messages as filesystem_messages
from labeling.jobs.broker import _redis_messages as redis_messages
from worker.contract import DEFAULT_QUEUE, EXPLAIN_CHUNK_TASK, GPU_QUEUE

log = logging.getLogger(__name__)


def send_explain_request(request: dict[str, Any]) -> None:
    """Hand one explain chunk (an ``ExplainRequest`` as a dict) to the model workers."""
    celery_app.send_task(EXPLAIN_CHUNK_TASK, args=[request], queue=GPU_QUEUE)


def explain_chunk_id(args: Any) -> int | None:
    """The chunk id of a task's arguments when they are an explain request or result."""
    if isinstance(args, list | tuple) and args and isinstance(args[0], dict):
        first = args[0]
        if "run_id" in first and "chunk_id" in first:
            return int(first["chunk_id"])
    return None


def _message_chunk_id(raw: bytes | str) -> int | None:
    try:
        envelope = json.loads(raw)
        body: Any = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return explain_chunk_id(json.loads(body))
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def queued_chunks(app: Any) -> frozenset[int] | None:
    """Explain chunk ids waiting in ``gpu``, or whose result waits in ``default``."""
    try:
        with app.connection_for_read() as conn:
            transport = conn.transport.driver_type
            readers = {"redis": redis_messages, "filesystem": filesystem_messages}
            if transport not in readers:
                return None
            ids = set()
            for queue in (GPU_QUEUE, DEFAULT_QUEUE):
                for raw in readers[transport](conn.default_channel, queue):
                    chunk_id = _message_chunk_id(raw)
                    if chunk_id is not None:
                        ids.add(chunk_id)
            return frozenset(ids)
    except Exception:
        log.warning("could not read the queues", exc_info=True)
        return None


def held_chunks(app: Any) -> tuple[frozenset[int] | None, int | None]:
    """(explain chunk ids the model workers hold, how many model workers answered)."""
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
                    chunk_id = explain_chunk_id(request.get("args") or [])
                    if chunk_id is not None:
                        ids.add(chunk_id)
        return frozenset(ids), len(nodes)
    except Exception:
        log.warning("could not ask the workers what they hold", exc_info=True)
        return None, None


def look() -> BrokerView:
    """Queues, then workers, then queues again (see ``labeling.jobs.broker.look``)."""
    before = queued_chunks(celery_app)
    held, workers = held_chunks(celery_app)
    after = queued_chunks(celery_app)
    queued = None if before is None or after is None else before | after
    return BrokerView(queued=queued, held=held, model_workers=workers)
