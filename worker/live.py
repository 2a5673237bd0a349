"""Live scoring: the Try box and the labeling API wait for these answers.

A ``LiveRequest`` arrives on the ``gpu_live`` queue, which model workers consume before ``gpu``
(see ``worker.celery_app``), so it waits at most for the chunk a worker is scoring now, never
behind the bulk queue. The answer is the task's return value, stored in the Celery result
backend for the web side to read: the worker still never sees the database, and nothing is
recorded as a job.

No retries and no late acks: the caller gives up after its timeout, so a second attempt minutes
later would answer nobody. A request older than its ``expires`` is dropped by Celery unscored.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from worker.base import Scorer
from worker.celery_app import app
from worker.contract import (
    SCORE_LIVE_TASK,
    ContractError,
    LiveOutcome,
    LiveRequest,
    LiveResult,
    WorkerInfo,
)

log = logging.getLogger(__name__)

# How the scorers word an item over the model's context (worker/cope.py, openai_backend.py):
# such an item is not truncated and not scored, and the caller must say so per item.
_TOO_LONG = re.compile(r"\btoo long\b", re.IGNORECASE)


def is_too_long(error: str) -> bool:
    return bool(error) and bool(_TOO_LONG.search(error))


def score_live_request(scorer: Scorer, request: LiveRequest) -> LiveResult:
    """Score one live request; the pure part of ``score_live``."""
    started = time.perf_counter()
    scores = scorer.score(request.policy, request.contents)
    seconds = time.perf_counter() - started
    if len(scores) != len(request.contents):
        raise RuntimeError(f"the scorer returned {len(scores)} results for {len(request.contents)}")
    return LiveResult(
        outcomes=[
            LiveOutcome(label=s.label, p1=s.p1, error=s.error, too_long=is_too_long(s.error))
            for s in scores
        ],
        worker=scorer.info,
        model_seconds=seconds,
    )


def _failed(error: str) -> dict[str, Any]:
    from worker.tasks import _fallback_info

    info: WorkerInfo = _fallback_info()
    return LiveResult(outcomes=[], worker=info, model_seconds=0.0, error=error).to_dict()


@app.task(  # type: ignore[untyped-decorator]
    name=SCORE_LIVE_TASK,
    ignore_result=False,
    acks_late=False,
    max_retries=0,
)
def score_live(request: dict[str, Any]) -> dict[str, Any]:
    """Score a ``LiveRequest`` dict and return its ``LiveResult`` dict (the result backend
    carries it back to the waiting web request)."""
    from worker.tasks import _describe_error, models

    try:
        parsed = LiveRequest.from_dict(request)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("malformed live request: %s", exc)
        return _failed(f"Malformed request: {exc}")
    try:
        result = score_live_request(models.get_scorer(), parsed)
    except Exception as exc:
        log.exception("live request failed")
        return _failed(_describe_error(exc))
    out: dict[str, Any] = result.to_dict()
    return out
