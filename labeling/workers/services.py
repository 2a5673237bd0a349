"""Model workers as the studio sees them: their heartbeats, stored and read.

Model workers have no database credentials; each sends a ``Heartbeat`` every few seconds as the
``labeling.record_heartbeat`` task on the ``default`` queue (``worker.heartbeat``). A worker whose
last heartbeat is older than ``COPE_WORKER_DOWN_AFTER_SECONDS`` (60 s) is down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from labeling.models import WorkerHeartbeat
from worker.contract import GPU_QUEUE, RECORD_HEARTBEAT_TASK, ContractError, Heartbeat

log = logging.getLogger(__name__)

# The page lists at most this many workers, most recently seen first.
PAGE_LIMIT = 200
# A worker not heard from for this long is forgotten (containers get a new name on every
# restart), when the next new worker first reports.
FORGET_AFTER = timedelta(days=7)


def down_after() -> timedelta:
    return timedelta(seconds=settings.COPE_WORKER_DOWN_AFTER_SECONDS)


def record_heartbeat(beat: Heartbeat) -> bool:
    """Store ``beat`` as its worker's latest; an older heartbeat arriving late changes nothing.

    Returns whether the row changed. The update is conditional on ``sent_at``, so two
    bookkeeping workers storing heartbeats of one worker out of order keep the newest.
    """
    now = timezone.now()
    sent_at = datetime.fromtimestamp(beat.sent_at, tz=UTC)
    fields: dict[str, Any] = {
        "hostname": beat.hostname,
        "pid": beat.pid,
        "queues": ",".join(beat.queues)[:200],
        "state": beat.state[:20],
        "backend": beat.backend[:40],
        "model_id": beat.model_id[:500],
        "model_revision": beat.model_revision[:200],
        "device": beat.device[:200],
        "weak": beat.weak,
        "memory_bytes": beat.memory_bytes,
        "memory_kind": beat.memory_kind[:10],
        "job_id": beat.job_id,
        "chunk_id": beat.chunk_id,
        "side": beat.side[:1],
        "task": beat.task[:100],
        "error": beat.error,
        "sent_at": sent_at,
        "last_seen": now,
    }
    updated = WorkerHeartbeat.objects.filter(name=beat.name, sent_at__lt=sent_at).update(**fields)
    if updated:
        return True
    if WorkerHeartbeat.objects.filter(name=beat.name).exists():
        return False  # a newer heartbeat is stored already
    WorkerHeartbeat.objects.filter(last_seen__lt=now - FORGET_AFTER).delete()
    try:
        with transaction.atomic():
            WorkerHeartbeat.objects.create(name=beat.name, first_seen=now, **fields)
    except IntegrityError:  # created meanwhile by another bookkeeping worker
        return bool(
            WorkerHeartbeat.objects.filter(name=beat.name, sent_at__lt=sent_at).update(**fields)
        )
    return True


# Celery ships no type hints, so its decorator is untyped to mypy.
@shared_task(  # type: ignore[untyped-decorator]
    name=RECORD_HEARTBEAT_TASK,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    max_retries=2,
)
def record_heartbeat_task(data: dict[str, Any]) -> None:
    try:
        beat = Heartbeat.from_dict(data)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("labeling.record_heartbeat: unusable heartbeat (%s): %.300r", exc, data)
        return
    record_heartbeat(beat)


@dataclass(frozen=True)
class WorkerRow:
    """One worker as the Workers page shows it."""

    beat: WorkerHeartbeat
    down: bool
    silent_seconds: int

    @property
    def status(self) -> str:
        if self.beat.state == "stopped":
            return "stopped"
        return "down" if self.down else self.beat.state


def list_workers(*, now: datetime | None = None) -> tuple[list[WorkerRow], int]:
    """The workers most recently seen first (at most ``PAGE_LIMIT``), and how many exist."""
    now = now or timezone.now()
    limit = down_after()
    beats = list(WorkerHeartbeat.objects.order_by("-last_seen", "name")[:PAGE_LIMIT])
    total = len(beats) if len(beats) < PAGE_LIMIT else WorkerHeartbeat.objects.count()
    rows = [
        WorkerRow(
            beat=beat,
            down=now - beat.last_seen > limit,
            silent_seconds=max(0, int((now - beat.last_seen).total_seconds())),
        )
        for beat in beats
    ]
    return rows, total


@dataclass(frozen=True)
class QueueStatus:
    """Who serves a queue now: workers ready (or busy), loading their model, or broken."""

    serving: int
    starting: int
    errors: list[str]

    @property
    def nobody(self) -> bool:
        return not (self.serving or self.starting or self.errors)


def queue_status(queue: str = GPU_QUEUE, *, now: datetime | None = None) -> QueueStatus:
    """The live (recently heard, not stopped) workers consuming ``queue``; bounded query."""
    since = (now or timezone.now()) - down_after()
    live = (
        WorkerHeartbeat.objects.filter(last_seen__gte=since)
        .exclude(state="stopped")
        .order_by("-last_seen")
        .values_list("queues", "state", "error")[:PAGE_LIMIT]
    )
    serving, starting, errors = 0, 0, []
    for queues, state, error in live:
        if queue not in queues.split(","):
            continue
        if state == "error":
            errors.append(error)
        elif state == "starting":
            starting += 1
        else:
            serving += 1
    return QueueStatus(serving=serving, starting=starting, errors=errors)
