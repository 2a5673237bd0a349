"""The worker's Celery tasks, run for real: a `celery worker` subprocess on the filesystem broker
and on Redis, fed by name on `gpu`, answering with tasks on `default` that a kombu consumer here
reads back. Plus the retry/failure paths in-process (eager)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from worker.config import WorkerConfig
from worker.contract import (
    DESCRIBE_TASK,
    EXPLAIN_CHUNK_TASK,
    GENERATE_TWIN_TASK,
    RECORD_CHUNK_TASK,
    RECORD_EXPLAIN_TASK,
    RECORD_HEARTBEAT_TASK,
    RECORD_TWIN_TASK,
    SCORE_CHUNK_TASK,
    ExplainRequest,
    ExplainResult,
    ScoreItem,
    ScoreRequest,
    ScoreResult,
    TwinRequest,
    TwinResult,
    VariantSpec,
)

REPO = Path(__file__).resolve().parents[2]
# A database of its own, not the suite's (COPE_TEST_REDIS_URL): the labeling tests' session-wide
# bookkeeping worker consumes `default` there and would take the answer these tests wait for.
REDIS_URL = os.environ.get("COPE_TEST_WORKER_REDIS_URL", "redis://127.0.0.1:6379/9")
POLICY = """# Violent threats

## Overview
Finds threats of violence against people.

## Definition of Terms
- **Person**: an identifiable individual.

## Interpretation of Language
- Read statements literally.

## Definition of Labels

### (VT1) Violent threat
#### Includes
- Threatening to physically hurt or kill a specific person.
#### Excludes
- Praising or thanking someone for their work.
"""
ITEMS = [
    ScoreItem(11, "I am going to find you and kill you, you will not survive the night."),
    ScoreItem(12, "The weather is lovely today."),
    ScoreItem(13, "Thanks so much for your help with the project!"),
    ScoreItem(14, ""),
]
EXPECTED_LABELS = [1, 0, 0, 0]


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def _worker_env(broker_url: str, broker_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COPE_", "CELERY_"))}
    env.update(
        {
            "CELERY_BROKER_URL": broker_url,
            "COPE_BROKER_DIR": str(broker_dir),
            "COPE_BACKEND": "embedding",
            "COPE_DEVICE": "cpu",
            "COPE_TWIN_BACKEND": "none",
            "COPE_TASK_MAX_RETRIES": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


class RunningWorker:
    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        from worker.celery_app import celery_worker_argv

        self.log_file = log_file
        argv = [sys.executable, "-m", *celery_worker_argv(loglevel="info")]
        self._log = log_file.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the prefork child dies with it
        )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(params=["filesystem", "redis"])
def broker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Celery, RunningWorker]]:
    if request.param == "redis":
        if not _redis_up():
            pytest.skip("no Redis at 127.0.0.1:6379")
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        url = REDIS_URL
    else:
        url = "filesystem://"
    env = _worker_env(url, tmp_path / "broker")
    from worker.celery_app import make_app

    # The web side's view of the same broker: sends by name, reads `default`.
    sender = make_app(WorkerConfig.from_env(env))
    worker = RunningWorker(env, tmp_path / "worker.log")
    try:
        yield sender, worker
    finally:
        worker.stop()
        if request.param == "redis":
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()


def next_result(sender: Celery, worker: RunningWorker, timeout: float = 90) -> tuple[str, Any]:
    """The next task message on `default`: (task name, its single argument)."""
    deadline = time.monotonic() + timeout
    with sender.connection_for_read() as conn:
        queue = conn.SimpleQueue("default")
        try:
            while time.monotonic() < deadline:
                if worker.proc.poll() is not None:
                    pytest.fail(f"the worker exited ({worker.proc.returncode}):\n{worker.log()}")
                try:
                    message = queue.get(timeout=1)
                except queue.Empty:
                    continue
                message.ack()
                if message.headers["task"] == RECORD_HEARTBEAT_TASK:
                    continue  # the worker's heartbeats share the queue (worker.heartbeat)
                args, kwargs, _embed = message.payload
                return str(message.headers["task"]), args[0]
        finally:
            queue.close()
    pytest.fail(f"no result on `default` within {timeout}s; worker log:\n{worker.log()}")


@pytest.mark.celery_worker
def test_worker_scores_a_chunk_and_answers_on_default(broker: tuple[Celery, RunningWorker]) -> None:
    sender, worker = broker
    request = ScoreRequest(job_id=5, chunk_id=42, side="B", policy=POLICY, items=ITEMS)
    sender.send_task(SCORE_CHUNK_TASK, args=[request.to_dict()])  # routed to `gpu`

    name, payload = next_result(sender, worker)
    assert name == RECORD_CHUNK_TASK
    result = ScoreResult.from_dict(payload)
    assert (result.job_id, result.chunk_id, result.side, result.error) == (5, 42, "B", "")
    assert [o.item_id for o in result.outcomes] == [11, 12, 13, 14]
    assert [o.label for o in result.outcomes] == EXPECTED_LABELS
    assert all(o.p1 is not None and 0 <= o.p1 <= 1 and o.error == "" for o in result.outcomes)
    assert result.worker.backend == "embedding" and result.worker.weak
    assert result.model_seconds > 0

    # A twin request without a twin backend is answered with the reason, not left hanging.
    sender.send_task(GENERATE_TWIN_TASK, args=[TwinRequest(request_id=9, policy=POLICY).to_dict()])
    name, payload = next_result(sender, worker)
    twin = TwinResult.from_dict(payload)
    assert name == RECORD_TWIN_TASK
    assert twin.request_id == 9 and twin.text == "" and "COPE_TWIN_BACKEND" in twin.error

    # A request from another contract version fails its chunk explicitly.
    bad = request.to_dict() | {"contract": 99}
    sender.send_task(SCORE_CHUNK_TASK, args=[bad])
    name, payload = next_result(sender, worker)
    assert name == RECORD_CHUNK_TASK
    assert payload["chunk_id"] == 42 and "contract version 99" in payload["error"]

    info = sender.send_task(DESCRIBE_TASK).get(timeout=60)
    assert info["backend"] == "embedding" and info["weak"] is True


# In-process: the retry and failure paths, with Celery's eager mode and the sends captured.


class FlakyScorer:
    def __init__(self, error: Exception, fail_times: int) -> None:
        from worker.contract import WorkerInfo

        self.info = WorkerInfo(backend="openai", model_id="m", model_revision="", device="d")
        self.error = error
        self.fail_times = fail_times
        self.calls = 0

    def score(self, policy: str, contents: list[str]) -> list[Any]:
        from worker.base import Score

        self.calls += 1
        if self.calls <= self.fail_times:
            raise self.error
        return [Score.from_p1(0.75) for _ in contents]


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    from worker import tasks

    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(tasks, "_send", lambda name, payload: sent.append((name, payload)))
    monkeypatch.setattr(tasks, "_countdown", lambda task, exc: 0.0)
    monkeypatch.setattr(tasks.models, "scorer", None)
    monkeypatch.setattr(tasks.models, "scorer_error", None)
    yield sent


def _request() -> dict[str, Any]:
    return ScoreRequest(job_id=1, chunk_id=2, side="A", policy=POLICY, items=ITEMS[:2]).to_dict()


def test_transient_error_is_retried_then_succeeds(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks
    from worker.openai_backend import BackendUnavailable

    scorer = FlakyScorer(BackendUnavailable("server down"), fail_times=2)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    monkeypatch.setattr(tasks.score_chunk, "max_retries", 3)
    tasks.score_chunk.apply(args=[_request()])
    assert scorer.calls == 3
    [(name, payload)] = eager
    result = ScoreResult.from_dict(payload)
    assert name == RECORD_CHUNK_TASK and result.error == ""
    assert [(o.item_id, o.label, o.p1) for o in result.outcomes] == [(11, 1, 0.75), (12, 1, 0.75)]


def test_final_failure_sends_the_chunk_back_with_its_error(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks
    from worker.openai_backend import BackendUnavailable

    scorer = FlakyScorer(BackendUnavailable("server down"), fail_times=99)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    monkeypatch.setattr(tasks.score_chunk, "max_retries", 2)
    tasks.score_chunk.apply(args=[_request()])
    assert scorer.calls == 3
    [(name, payload)] = eager
    result = ScoreResult.from_dict(payload)
    assert (name, result.job_id, result.chunk_id, result.outcomes) == (RECORD_CHUNK_TASK, 1, 2, [])
    assert result.error == "server down"


def test_a_bug_is_not_retried_and_fails_the_chunk(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    scorer = FlakyScorer(ValueError("boom"), fail_times=99)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    tasks.score_chunk.apply(args=[_request()])
    assert scorer.calls == 1
    assert ScoreResult.from_dict(eager[0][1]).error == "ValueError: boom"


def test_a_configuration_error_is_reported_on_every_chunk(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import celery_app, tasks

    broken = WorkerConfig.from_env({"COPE_BACKEND": "openai"})
    monkeypatch.setattr(celery_app.app, "cope_config", broken)
    tasks.score_chunk.apply(args=[_request()])
    tasks.score_chunk.apply(args=[_request()])
    errors = [ScoreResult.from_dict(p).error for _, p in eager]
    assert len(errors) == 2 and all("COPE_OPENAI_BASE_URL" in e for e in errors)


def _redelivered_request(attempt: int) -> dict[str, Any]:
    request = ScoreRequest(
        job_id=1, chunk_id=2, side="A", policy=POLICY, items=ITEMS[:2], attempt=attempt
    )
    return request.to_dict()


def test_a_request_without_an_attempt_is_a_first_send() -> None:
    data = _request()
    del data["attempt"]
    assert ScoreRequest.from_dict(data).attempt == 1
    assert ScoreRequest.from_dict(_redelivered_request(3)).attempt == 3


def test_a_chunk_that_keeps_killing_workers_is_answered_as_failed(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    scorer = FlakyScorer(ValueError("never called"), fail_times=0)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    monkeypatch.setattr(tasks, "_redelivered", lambda task: True)
    resent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(tasks, "_send_to_gpu", lambda name, payload: resent.append((name, payload)))

    # Redelivered below the limit: sent on as the next attempt (this message is acked).
    tasks.score_chunk.apply(args=[_redelivered_request(1)])
    assert [(n, ScoreRequest.from_dict(p).attempt) for n, p in resent] == [(SCORE_CHUNK_TASK, 2)]
    assert eager == [] and scorer.calls == 0
    # Redelivered at the limit (COPE_MAX_CHUNK_ATTEMPTS, 3 by default): a failed result.
    tasks.score_chunk.apply(args=[_redelivered_request(3)])
    [(name, payload)] = eager
    result = ScoreResult.from_dict(payload)
    assert name == RECORD_CHUNK_TASK and result.outcomes == [] and scorer.calls == 0
    assert "worker process died" in result.error and "COPE_MAX_CHUNK_ATTEMPTS=3" in result.error


def test_a_first_delivery_is_scored_whatever_its_attempt(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    scorer = FlakyScorer(ValueError("unused"), fail_times=0)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    tasks.score_chunk.apply(args=[_redelivered_request(5)])
    assert scorer.calls == 1 and ScoreResult.from_dict(eager[0][1]).error == ""


# Attribution: every item under every variant, the same delivery rules as a score chunk.


def _variants() -> list[VariantSpec]:
    from worker.clauses import parse_clauses, remove_clause

    threat = next(c for c in parse_clauses(POLICY) if c.kind == "include")
    return [
        VariantSpec("A", POLICY),
        VariantSpec(f"A-:{threat.key}", remove_clause(POLICY, threat)),
        VariantSpec("A-:overview", remove_clause(POLICY, parse_clauses(POLICY)[0])),
    ]


def _explain(attempt: int = 1) -> dict[str, Any]:
    request = ExplainRequest(
        run_id=4, chunk_id=8, variants=_variants(), items=ITEMS[:2], attempt=attempt
    )
    return request.to_dict()


@pytest.mark.celery_worker
def test_worker_explains_a_chunk_and_answers_on_default(
    broker: tuple[Celery, RunningWorker],
) -> None:
    sender, worker = broker
    variants = _variants()
    request = ExplainRequest(run_id=3, chunk_id=77, variants=variants, items=ITEMS)
    sender.send_task(EXPLAIN_CHUNK_TASK, args=[request.to_dict()], queue="gpu")

    name, payload = next_result(sender, worker)
    assert name == RECORD_EXPLAIN_TASK
    result = ExplainResult.from_dict(payload)
    assert (result.run_id, result.chunk_id, result.error) == (3, 77, "")
    assert [(o.key, o.item_id) for o in result.outcomes] == [
        (v.key, i.item_id) for v in variants for i in ITEMS
    ]
    assert [o.label for o in result.outcomes[: len(ITEMS)]] == EXPECTED_LABELS  # base A
    assert all(o.error == "" and o.p1 is not None and o.margin is not None for o in result.outcomes)
    assert result.worker.backend == "embedding" and result.model_seconds > 0

    # Malformed (another contract version): answered with the reason, never left hanging.
    sender.send_task(EXPLAIN_CHUNK_TASK, args=[request.to_dict() | {"contract": 99}], queue="gpu")
    name, payload = next_result(sender, worker)
    assert name == RECORD_EXPLAIN_TASK
    assert payload["chunk_id"] == 77 and "contract version 99" in payload["error"]


class VariantCountingScorer(FlakyScorer):
    def score_variants(self, policies: list[str], contents: list[str]) -> list[list[Any]]:
        from worker.base import Score

        self.calls += 1
        if self.calls <= self.fail_times:
            raise self.error
        return [
            [Score(label=1, p1=0.75, margin=1.5) if n else Score.from_p1(0.25) for _ in contents]
            for n, _ in enumerate(policies)
        ]


def test_explain_outcomes_come_variant_by_variant_with_margins(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import math

    from worker import tasks

    scorer = VariantCountingScorer(ValueError("unused"), fail_times=0)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    tasks.explain_chunk.apply(args=[_explain()])
    [(name, payload)] = eager
    result = ExplainResult.from_dict(payload)
    assert name == RECORD_EXPLAIN_TASK and scorer.calls == 1
    keys = [v.key for v in _variants()]
    assert [(o.key, o.item_id) for o in result.outcomes] == [(k, i) for k in keys for i in (11, 12)]
    # The backend's margin where it gave one; else the logit of p1.
    assert [o.margin for o in result.outcomes[:2]] == [math.log(0.25 / 0.75)] * 2
    assert [o.margin for o in result.outcomes[2:]] == [1.5] * 4


def test_explain_falls_back_to_one_score_call_per_variant(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    scorer = FlakyScorer(ValueError("unused"), fail_times=0)  # no score_variants
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    tasks.explain_chunk.apply(args=[_explain()])
    result = ExplainResult.from_dict(eager[0][1])
    assert scorer.calls == 3 and len(result.outcomes) == 6 and result.error == ""


def test_explain_transient_error_is_retried_then_fails_with_its_reason(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks
    from worker.openai_backend import BackendUnavailable

    scorer = VariantCountingScorer(BackendUnavailable("server down"), fail_times=1)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    monkeypatch.setattr(tasks.explain_chunk, "max_retries", 2)
    tasks.explain_chunk.apply(args=[_explain()])
    assert scorer.calls == 2 and ExplainResult.from_dict(eager[0][1]).error == ""

    eager.clear()
    scorer = VariantCountingScorer(BackendUnavailable("server down"), fail_times=99)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    tasks.explain_chunk.apply(args=[_explain()])
    assert scorer.calls == 3
    [(name, payload)] = eager
    result = ExplainResult.from_dict(payload)
    assert (name, result.run_id, result.chunk_id, result.outcomes) == (
        RECORD_EXPLAIN_TASK,
        4,
        8,
        [],
    )
    assert result.error == "server down"


def test_explain_bug_and_malformed_request_fail_the_chunk_at_once(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    scorer = VariantCountingScorer(ValueError("boom"), fail_times=99)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    tasks.explain_chunk.apply(args=[_explain()])
    assert scorer.calls == 1
    assert ExplainResult.from_dict(eager[0][1]).error == "ValueError: boom"

    bad = _explain()
    bad["variants"].append(dict(bad["variants"][0]))  # a key twice
    tasks.explain_chunk.apply(args=[bad])
    assert scorer.calls == 1
    result = ExplainResult.from_dict(eager[1][1])
    assert result.error.startswith("Malformed request") and "unique" in result.error


def test_an_explain_chunk_that_keeps_killing_workers_is_answered_as_failed(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    scorer = VariantCountingScorer(ValueError("never called"), fail_times=0)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    monkeypatch.setattr(tasks, "_redelivered", lambda task: True)
    resent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(tasks, "_send_to_gpu", lambda name, payload: resent.append((name, payload)))

    tasks.explain_chunk.apply(args=[_explain(attempt=1)])
    assert [(n, ExplainRequest.from_dict(p).attempt) for n, p in resent] == [
        (EXPLAIN_CHUNK_TASK, 2)
    ]
    assert eager == [] and scorer.calls == 0
    tasks.explain_chunk.apply(args=[_explain(attempt=3)])
    [(name, payload)] = eager
    result = ExplainResult.from_dict(payload)
    assert name == RECORD_EXPLAIN_TASK and result.outcomes == [] and scorer.calls == 0
    assert "worker process died" in result.error and "COPE_MAX_CHUNK_ATTEMPTS=3" in result.error


def test_explain_over_its_time_limit_is_answered_with_the_setting_to_change(
    eager: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from worker import tasks

    scorer = VariantCountingScorer(SoftTimeLimitExceeded(), fail_times=99)
    monkeypatch.setattr(tasks.models, "scorer", scorer)
    tasks.explain_chunk.apply(args=[_explain()])
    result = ExplainResult.from_dict(eager[0][1])
    assert scorer.calls == 1 and result.outcomes == []
    assert (
        result.error.startswith("Time limit reached")
        and "COPE_TASK_SOFT_TIME_LIMIT" in result.error
    )
