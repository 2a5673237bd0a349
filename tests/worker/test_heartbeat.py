"""The heartbeat sender of a model worker process: what it reports, and that it stops cleanly
with a last ``stopped`` heartbeat. Sending through a real broker to the web side is covered by
tests/labeling/workers/test_workers.py with real workers."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from worker import heartbeat
from worker.celery_app import app
from worker.contract import EXPLAIN_CHUNK_TASK, SCORE_CHUNK_TASK, Heartbeat, WorkerInfo


class _LoadedScorer:
    info = WorkerInfo("cope", "base + adapter", "rev1", "cuda:0 (test)")


@pytest.fixture
def beats(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Heartbeat]:
    sent: list[Heartbeat] = []
    config = replace(app.cope_config, heartbeat_seconds=0.05, heartbeat_file=str(tmp_path / "beat"))
    monkeypatch.setattr(app, "cope_config", config)
    monkeypatch.setattr(heartbeat, "send", lambda beat, **_: sent.append(beat))
    yield sent
    heartbeat.stop()
    heartbeat.current.clear()


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sender_reports_loading_then_the_job_then_stops_with_a_last_word(
    beats: list[Heartbeat], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    monkeypatch.setattr(tasks.models, "scorer", None)
    heartbeat.start()
    heartbeat.start()  # once per process
    _wait(lambda: len(beats) >= 2)
    first = beats[0]
    assert first.state == "starting" and first.pid == os.getpid() and first.hostname
    assert first.memory_kind in ("rss", "gpu") and (first.memory_bytes or 0) > 0

    monkeypatch.setattr(tasks.models, "scorer", _LoadedScorer())
    heartbeat.current.set(SCORE_CHUNK_TASK, [{"job_id": 3, "chunk_id": 9, "side": "B"}])
    _wait(lambda: beats[-1].state == "busy")
    busy = beats[-1]
    assert (busy.job_id, busy.chunk_id, busy.side) == (3, 9, "B")
    assert (busy.backend, busy.model_id, busy.model_revision) == ("cope", "base + adapter", "rev1")
    heartbeat.current.clear()
    _wait(lambda: beats[-1].state == "ready" and beats[-1].job_id is None)

    heartbeat.stop()
    assert beats[-1].state == "stopped"
    count = len(beats)
    time.sleep(0.2)
    assert len(beats) == count, "the thread kept sending after stop()"


def test_a_model_that_failed_to_load_is_reported_with_its_error(
    beats: list[Heartbeat], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks
    from worker.base import BackendConfigError

    monkeypatch.setattr(tasks.models, "scorer", None)
    monkeypatch.setattr(tasks.models, "scorer_error", BackendConfigError("COPE_ADAPTER missing"))
    beat = heartbeat.build()
    assert beat.state == "error" and beat.error == "COPE_ADAPTER missing"


def test_health_file_is_fresh_only_after_heartbeats_go_out(beats: list[Heartbeat]) -> None:
    config = app.cope_config
    ok, why = heartbeat.healthy(config)
    assert not ok and "no heartbeat sent yet" in why
    heartbeat.start()
    _wait(lambda: Path(config.heartbeat_file).exists())
    assert heartbeat.healthy(config)[0]
    old = time.time() - 600
    heartbeat.stop()
    os.utime(config.heartbeat_file, (old, old))
    ok, why = heartbeat.healthy(config)
    assert not ok and "ago" in why
    assert not heartbeat.healthy(replace(config, heartbeat_seconds=0))[0]


def test_no_sender_when_heartbeats_are_off(
    beats: list[Heartbeat], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "cope_config", replace(app.cope_config, heartbeat_seconds=0))
    heartbeat.start()
    time.sleep(0.2)
    assert beats == []


def test_an_explain_chunk_reports_the_worker_busy_with_that_chunk(
    beats: list[Heartbeat], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    monkeypatch.setattr(tasks.models, "scorer", _LoadedScorer())
    heartbeat.start()

    class _Task:
        name = EXPLAIN_CHUNK_TASK

    heartbeat._task_started(task=_Task(), args=[{"run_id": 4, "chunk_id": 11}])
    _wait(lambda: bool(beats) and beats[-1].state == "busy")
    busy = beats[-1]
    assert (busy.task, busy.chunk_id, busy.job_id, busy.side) == (EXPLAIN_CHUNK_TASK, 11, None, "")
    heartbeat._task_finished(task=_Task())
    _wait(lambda: beats[-1].state == "ready")


def test_explain_tasks_are_routed_to_the_gpu_and_their_answers_to_default() -> None:
    from worker.celery_app import TASK_ROUTES
    from worker.contract import DEFAULT_QUEUE, GPU_QUEUE, RECORD_EXPLAIN_TASK

    assert TASK_ROUTES[EXPLAIN_CHUNK_TASK] == {"queue": GPU_QUEUE}
    assert TASK_ROUTES[RECORD_EXPLAIN_TASK] == {"queue": DEFAULT_QUEUE}
