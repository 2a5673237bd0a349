"""The web side's end of twin generation: a worker's TwinResult, written once."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import OperationalError

from policies.services import record_twin_result
from worker.contract import RECORD_TWIN_TASK, ContractError, TwinResult

log = logging.getLogger(__name__)


# Celery ships no type hints, so its decorator is untyped to mypy.
@shared_task(  # type: ignore[untyped-decorator]
    name=RECORD_TWIN_TASK,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
    time_limit=60,
    soft_time_limit=50,
)
def record_twin(result: dict[str, Any]) -> None:
    """Record a twin result sent by a GPU worker; a redelivered message changes nothing."""
    try:
        parsed = TwinResult.from_dict(result)
    except (ContractError, KeyError, TypeError, ValueError):
        log.exception("malformed twin result dropped: %r", str(result)[:500])
        return
    record_twin_result(result=parsed)
