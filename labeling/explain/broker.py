"""The explain runs' side of the broker: sending a chunk, and which chunks it and the workers hold.

``send_explain_request`` is the one place an explain chunk goes to the model workers (tests
replace it here). ``look`` answers, like ``labeling.jobs.broker.look``, which explain chunks
wait in the queues or are held by a model worker; an explain message is told from a job's by the
``run_id`` its request and its result carry (chunk ids of the two kinds are separate sequences).
"""

from __future__ import annotations

from typing import Any

from cope_studio.celery import app as celery_app
from labeling.jobs import broker as jobs_broker
from labeling.jobs.broker import BrokerView
from worker.contract import EXPLAIN_CHUNK_TASK, GPU_QUEUE


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


def look() -> BrokerView:
    """Which explain chunks wait in the queues or are held by a model worker: the jobs' look
    (queues, workers, queues again), reading explain chunks instead of job chunks."""
    return jobs_broker.look(explain_chunk_id)
