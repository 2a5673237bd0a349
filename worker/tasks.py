"""Worker tasks: score one chunk of one job side, explain one chunk (every item under every
policy variant), write a twin, write a probe's carve-outs and rewording, suggest rewrites of a
clause, describe the loaded model.

The model is loaded once per worker process (at ``worker_process_init``, or on the first task)
and kept. Results go back as tasks by name on the ``default`` queue; a request that still fails
after its retries is answered with a result whose ``error`` is set, so the web side can mark the
chunk or the twin request as failed instead of waiting for it forever.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import replace
from typing import Any

import httpx
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready

from worker import heartbeat  # noqa: F401  (connects its signals before the preload below)
from worker import twin as twins
from worker.base import BackendConfigError, Scorer, TwinWriter, score_variants
from worker.carveouts import CARVEOUT_PROMPT_VERSION, build_carveout_prompt, parse_carveout
from worker.celery_app import app
from worker.clauses import parse_clauses
from worker.config import WorkerConfig
from worker.contract import (
    DEFAULT_QUEUE,
    DESCRIBE_TASK,
    EXPLAIN_CHUNK_TASK,
    GENERATE_TWIN_TASK,
    GPU_QUEUE,
    RECORD_CHUNK_TASK,
    RECORD_EXPLAIN_TASK,
    RECORD_TWIN_TASK,
    SCORE_CHUNK_TASK,
    ContractError,
    ExplainRequest,
    ExplainResult,
    ScoreOutcome,
    ScoreRequest,
    ScoreResult,
    TwinRequest,
    TwinResult,
    VariantOutcome,
    WorkerInfo,
    margin_from_p1,
)
from worker.contract_llm import (
    PROBE_LLM_TASK,
    RECORD_PROBE_LLM_TASK,
    RECORD_SUGGEST_TASK,
    SUGGEST_TASK,
    CarveoutAnswer,
    CarveoutAsk,
    ProbeLLMRequest,
    ProbeLLMResult,
    SuggestRequest,
    SuggestResult,
)
from worker.embedding import TextEmbedder
from worker.loader import load_scorer, load_twin_writer
from worker.openai_backend import BackendUnavailable, OpenAIBackendError
from worker.suggest import SUGGEST_PROMPT_VERSION, build_suggest_prompt, parse_suggestions

log = logging.getLogger(__name__)

# Worth another try later: the server or network may come back.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    BackendUnavailable,
    httpx.TransportError,
    ConnectionError,
    TimeoutError,
)


def _config() -> WorkerConfig:
    config = app.cope_config
    assert isinstance(config, WorkerConfig)
    return config


class _Models:
    """This process's loaded models. A configuration error is remembered and reported by every
    task (no reload loop); anything else is retried on the next task."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scorer: Scorer | None = None
        self.scorer_error: BackendConfigError | None = None
        self.writer: TwinWriter | None = None
        self.writer_loaded = False
        self.writer_error: BackendConfigError | None = None
        self.embedder: TextEmbedder | None = None
        self.embedder_tried = False

    def get_scorer(self) -> Scorer:
        with self.lock:
            if self.scorer_error is not None:
                raise self.scorer_error
            if self.scorer is None:
                started = time.perf_counter()
                try:
                    self.scorer = load_scorer(_config())
                except BackendConfigError as exc:
                    self.scorer_error = exc
                    raise
                log.info(
                    "loaded %s scorer %s in %.1fs",
                    self.scorer.info.backend,
                    self.scorer.info.model_id,
                    time.perf_counter() - started,
                )
            return self.scorer

    def get_twin_writer(self) -> TwinWriter | None:
        with self.lock:
            if self.writer_error is not None:
                raise self.writer_error
            if not self.writer_loaded:
                try:
                    self.writer = load_twin_writer(_config())
                except BackendConfigError as exc:
                    self.writer_error = exc
                    raise
                self.writer_loaded = True
            return self.writer

    def get_embedder(self) -> TextEmbedder | None:
        """The embedding model for a twin's meaning similarity: the scorer's, or a small one."""
        with self.lock:
            inner = getattr(self.scorer, "embedder", None)
            if inner is not None:
                return inner  # type: ignore[no-any-return]
            if not self.embedder_tried:
                self.embedder_tried = True
                try:
                    from worker.embedding import SentenceEmbedder

                    self.embedder = SentenceEmbedder(_config().embedding_model, device="cpu")
                except Exception:  # the similarity numbers are optional
                    log.exception("no embedding model for twin similarity")
            return self.embedder


models = _Models()


def preload() -> None:
    if not _config().preload:
        return
    try:
        models.get_scorer()
    except Exception:
        log.exception("the scorer did not load; every task will report why")


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _preload_in_child(**_: Any) -> None:
    preload()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _preload_in_solo_worker(sender: Any = None, **_: Any) -> None:
    # The solo and thread pools run tasks in this process (no worker_process_init).
    pool_module = type(getattr(sender, "pool", None)).__module__
    if pool_module.endswith(("solo", "thread")):
        preload()


def _send(task_name: str, payload: dict[str, Any]) -> None:
    app.send_task(task_name, args=[payload], queue=DEFAULT_QUEUE)


def _send_to_gpu(task_name: str, payload: dict[str, Any]) -> None:
    app.send_task(task_name, args=[payload], queue=GPU_QUEUE)


def _redelivered(task: Task) -> bool:
    """Whether the broker hands this message out again because the worker holding it was lost
    (late acks + ``task_reject_on_worker_lost``: the process died mid-task)."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _send_or_retry(task: Task, task_name: str, payload: dict[str, Any]) -> None:
    """Send a result; if the broker refuses even after kombu's own retries, run the task again
    later rather than lose the result (the web side records results idempotently)."""
    try:
        _send(task_name, payload)
    except Exception as exc:
        log.exception("could not send %s", task_name)
        raise task.retry(exc=exc, countdown=_countdown(task, exc)) from exc


def _countdown(task: Task, exc: BaseException) -> float:
    wish = getattr(exc, "retry_after", None)
    if isinstance(wish, int | float) and wish > 0:
        return float(min(wish, _config().task_retry_backoff_max))
    base = min(_config().task_retry_backoff_max, 5 * 2 ** int(task.request.retries))
    return float(base * random.uniform(0.8, 1.2))


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"Time limit reached ({_config().task_soft_time_limit}s, COPE_TASK_SOFT_TIME_LIMIT)."
    if isinstance(exc, BackendConfigError | BackendUnavailable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _fallback_info() -> WorkerInfo:
    scorer = models.scorer
    if scorer is not None:
        return scorer.info
    config = _config()
    return WorkerInfo(backend=config.backend, model_id="", model_revision="", device="")


def score_request(scorer: Scorer, request: ScoreRequest) -> ScoreResult:
    """Score one request; the pure part of ``score_chunk``."""
    started = time.perf_counter()
    scores = scorer.score(request.policy, [item.text for item in request.items])
    seconds = time.perf_counter() - started
    if len(scores) != len(request.items):
        raise RuntimeError(f"the scorer returned {len(scores)} results for {len(request.items)}")
    return ScoreResult(
        job_id=request.job_id,
        chunk_id=request.chunk_id,
        side=request.side,
        outcomes=[
            ScoreOutcome(item_id=item.item_id, label=s.label, p1=s.p1, error=s.error)
            for item, s in zip(request.items, scores, strict=True)
        ],
        worker=scorer.info,
        model_seconds=seconds,
    )


@app.task(  # type: ignore[untyped-decorator]
    name=SCORE_CHUNK_TASK,
    bind=True,
    max_retries=_config().task_max_retries,
)
def score_chunk(self: Task, request: dict[str, Any]) -> None:
    """Score a ``ScoreRequest`` (as a dict) and send its ``ScoreResult`` to ``record_chunk``."""
    try:
        parsed = ScoreRequest.from_dict(request)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("malformed score request: %s", exc)
        if isinstance(request, dict) and "job_id" in request and "chunk_id" in request:
            failed = _chunk_failure(
                int(request["job_id"]),
                int(request["chunk_id"]),
                str(request.get("side", "")),
                f"Malformed request: {exc}",
            )
            _send(RECORD_CHUNK_TASK, failed.to_dict())
        return
    if _redelivered(self):
        # A worker process died with this message (out of memory, a CUDA abort, or just a
        # restart). The message itself cannot count how often: a redelivery is the same
        # message. So either give up, or send it on as the next attempt and ack this one, so
        # that a chunk that kills every worker stops after COPE_MAX_CHUNK_ATTEMPTS deaths.
        limit = _config().max_chunk_attempts
        if parsed.attempt >= limit:
            log.error("chunk %s: worker lost on attempt %s; giving up", parsed.chunk_id, limit)
            _send_or_retry(self, RECORD_CHUNK_TASK, _worker_died(parsed, limit).to_dict())
        else:
            log.warning("chunk %s: worker lost on attempt %s", parsed.chunk_id, parsed.attempt)
            again = replace(parsed, attempt=parsed.attempt + 1)
            _send_to_gpu(SCORE_CHUNK_TASK, again.to_dict())
        return
    try:
        result = score_request(models.get_scorer(), parsed)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries < self.max_retries:
            countdown = _countdown(self, exc)
            log.warning("chunk %s: %s; retry in %.0fs", parsed.chunk_id, exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from exc
        result = _failed_chunk(parsed, exc)
    except Exception as exc:
        log.exception("chunk %s failed", parsed.chunk_id)
        result = _failed_chunk(parsed, exc)
    _send_or_retry(self, RECORD_CHUNK_TASK, result.to_dict())


def _chunk_failure(job_id: int, chunk_id: int, side: str, error: str) -> ScoreResult:
    """A result that fails the whole chunk: no outcomes, the reason in ``error``."""
    return ScoreResult(
        job_id=job_id,
        chunk_id=chunk_id,
        side=side,
        outcomes=[],
        worker=_fallback_info(),
        model_seconds=0.0,
        error=error,
    )


def _worker_died(request: ScoreRequest, limit: int) -> ScoreResult:
    return _chunk_failure(
        request.job_id,
        request.chunk_id,
        request.side,
        f"A worker process died while scoring this chunk, up to attempt {request.attempt} "
        f"(COPE_MAX_CHUNK_ATTEMPTS={limit}): out of memory or a CUDA error are likely; "
        "see the GPU worker's log. It is not scored again until someone retries it.",
    )


def _failed_chunk(request: ScoreRequest, exc: BaseException) -> ScoreResult:
    return _chunk_failure(request.job_id, request.chunk_id, request.side, _describe_error(exc))


def explain_request(scorer: Scorer, request: ExplainRequest) -> ExplainResult:
    """Score every item under every variant; the pure part of ``explain_chunk``."""
    started = time.perf_counter()
    texts = [item.text for item in request.items]
    results = score_variants(scorer, [v.policy for v in request.variants], texts)
    seconds = time.perf_counter() - started
    outcomes = []
    for variant, scores in zip(request.variants, results, strict=True):
        for item, s in zip(request.items, scores, strict=True):
            margin = s.margin
            if margin is None and s.p1 is not None:
                margin = margin_from_p1(s.p1)
            outcomes.append(
                VariantOutcome(variant.key, item.item_id, s.label, s.p1, margin, s.error)
            )
    return ExplainResult(
        run_id=request.run_id,
        chunk_id=request.chunk_id,
        outcomes=outcomes,
        worker=scorer.info,
        model_seconds=seconds,
    )


def _explain_failure(run_id: int, chunk_id: int, error: str) -> ExplainResult:
    """A result that fails the whole explain chunk: no outcomes, the reason in ``error``."""
    return ExplainResult(
        run_id=run_id,
        chunk_id=chunk_id,
        outcomes=[],
        worker=_fallback_info(),
        model_seconds=0.0,
        error=error,
    )


@app.task(  # type: ignore[untyped-decorator]
    name=EXPLAIN_CHUNK_TASK,
    bind=True,
    max_retries=_config().task_max_retries,
)
def explain_chunk(self: Task, request: dict[str, Any]) -> None:
    """Score an ``ExplainRequest`` (as a dict) and send its ``ExplainResult`` to
    ``record_explain``: the same retries, time limits and failure answers as ``score_chunk``."""
    try:
        parsed = ExplainRequest.from_dict(request)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("malformed explain request: %s", exc)
        if isinstance(request, dict) and "run_id" in request and "chunk_id" in request:
            failed = _explain_failure(
                int(request["run_id"]), int(request["chunk_id"]), f"Malformed request: {exc}"
            )
            _send(RECORD_EXPLAIN_TASK, failed.to_dict())
        return
    if _redelivered(self):  # a worker process died with this message: see score_chunk
        limit = _config().max_chunk_attempts
        if parsed.attempt >= limit:
            log.error("explain chunk %s: worker lost on attempt %s", parsed.chunk_id, limit)
            died = _explain_failure(
                parsed.run_id,
                parsed.chunk_id,
                f"A worker process died while explaining this chunk, up to attempt "
                f"{parsed.attempt} (COPE_MAX_CHUNK_ATTEMPTS={limit}): out of memory or a CUDA "
                "error are likely; see the GPU worker's log. It is not run again until "
                "someone retries it.",
            )
            _send_or_retry(self, RECORD_EXPLAIN_TASK, died.to_dict())
        else:
            log.warning(
                "explain chunk %s: worker lost on attempt %s", parsed.chunk_id, parsed.attempt
            )
            _send_to_gpu(EXPLAIN_CHUNK_TASK, replace(parsed, attempt=parsed.attempt + 1).to_dict())
        return
    try:
        result = explain_request(models.get_scorer(), parsed)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries < self.max_retries:
            countdown = _countdown(self, exc)
            log.warning("explain chunk %s: %s; retry in %.0fs", parsed.chunk_id, exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from exc
        result = _explain_failure(parsed.run_id, parsed.chunk_id, _describe_error(exc))
    except Exception as exc:
        log.exception("explain chunk %s failed", parsed.chunk_id)
        result = _explain_failure(parsed.run_id, parsed.chunk_id, _describe_error(exc))
    _send_or_retry(self, RECORD_EXPLAIN_TASK, result.to_dict())


@app.task(  # type: ignore[untyped-decorator]
    name=GENERATE_TWIN_TASK,
    bind=True,
    max_retries=_config().task_max_retries,
)
def generate_twin(self: Task, request: dict[str, Any]) -> None:
    """Write a twin for a ``TwinRequest`` dict; send the ``TwinResult`` to ``record_twin``."""
    from worker.twin import generate_twin as write_twin

    try:
        parsed = TwinRequest.from_dict(request)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("malformed twin request: %s", exc)
        if isinstance(request, dict) and "request_id" in request:
            failed = TwinResult(
                request_id=int(request["request_id"]),
                text="",
                model="",
                prompt="",
                error=f"Malformed request: {exc}",
            )
            _send(RECORD_TWIN_TASK, failed.to_dict())
        return
    try:
        writer = models.get_twin_writer()
        result = write_twin(
            parsed.policy,
            writer,
            similarity_model=models.get_embedder() if writer is not None else None,
            request_id=parsed.request_id,
        )
    except TRANSIENT_ERRORS as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=_countdown(self, exc)) from exc
        result = _failed_twin(parsed, exc)
    except Exception as exc:
        log.exception("twin request %s failed", parsed.request_id)
        result = _failed_twin(parsed, exc)
    _send_or_retry(self, RECORD_TWIN_TASK, result.to_dict())


def _failed_twin(request: TwinRequest, exc: BaseException) -> TwinResult:
    writer = models.writer
    return TwinResult(
        request_id=request.request_id,
        text="",
        model=writer.model_name if writer is not None else "",
        prompt="",
        error=_describe_error(exc),
    )


def write_carveout(writer: TwinWriter, policy: str, ask: CarveoutAsk) -> CarveoutAnswer:
    """One item's carve-out: the prompt, the model's one line, checked. A refusal of this one
    prompt (the server will not take the content) fails this item alone; transient failures
    propagate so the task retries."""
    try:
        prompt = build_carveout_prompt(policy, ask.label, ask.text)
    except ValueError as exc:
        return CarveoutAnswer(ask.item_id, ask.label, "", "", str(exc))
    record = f"{CARVEOUT_PROMPT_VERSION}\n{prompt}"
    try:
        raw = writer.write(prompt)
    except OpenAIBackendError as exc:
        return CarveoutAnswer(
            ask.item_id, ask.label, "", record, f"The model server refused: {exc}"
        )
    criterion, problem = parse_carveout(raw)
    return CarveoutAnswer(ask.item_id, ask.label, criterion, record, problem)


def probe_llm_answer(writer: TwinWriter | None, request: ProbeLLMRequest) -> ProbeLLMResult:
    """A probe's rewording (``worker.twin``'s prompt and checks) and its carve-outs; the pure
    part of ``probe_llm``."""
    if writer is None:
        return _probe_llm_failure(request.run_id, twins.MISSING_TWIN_BACKEND)
    try:
        rewording = twins.generate_twin(request.policy, writer, request_id=request.run_id)
        text, error = rewording.text, rewording.error
    except OpenAIBackendError as exc:  # refused: the carve-outs may still be written
        text, error = "", f"The model server refused the rewording: {exc}"
    answers = [write_carveout(writer, request.policy, ask) for ask in request.items]
    return ProbeLLMResult(
        run_id=request.run_id,
        rewording=text,
        rewording_error=error,
        model=writer.model_name,
        prompt=f"{twins.TWIN_PROMPT_VERSION}\n{twins.build_twin_prompt(request.policy)}",
        carveouts=answers,
    )


def _probe_llm_failure(run_id: int, error: str) -> ProbeLLMResult:
    writer = models.writer
    model = writer.model_name if writer is not None else ""
    return ProbeLLMResult(run_id, "", "", model, "", [], error=error)


@app.task(  # type: ignore[untyped-decorator]
    name=PROBE_LLM_TASK,
    bind=True,
    max_retries=_config().task_max_retries,
)
def probe_llm(self: Task, request: dict[str, Any]) -> None:
    """Write a probe run's rewording and carve-outs (a ``ProbeLLMRequest`` dict); send the
    ``ProbeLLMResult`` to ``record_probe_llm``. Every path answers: a malformed request, a
    missing backend, a server that stays down, a worker that died on it (redelivered) and a
    bug all come back as a result whose ``error`` says so."""
    try:
        parsed = ProbeLLMRequest.from_dict(request)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("malformed probe LLM request: %s", exc)
        if isinstance(request, dict) and "run_id" in request:
            failed = _probe_llm_failure(int(request["run_id"]), f"Malformed request: {exc}")
            _send(RECORD_PROBE_LLM_TASK, failed.to_dict())
        return
    if _redelivered(self):
        died = _probe_llm_failure(
            parsed.run_id,
            "A worker process died while writing this probe's carve-outs and rewording (out "
            "of memory is likely; see the GPU worker's log). Ask again from the probe page.",
        )
        _send_or_retry(self, RECORD_PROBE_LLM_TASK, died.to_dict())
        return
    try:
        result = probe_llm_answer(models.get_twin_writer(), parsed)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=_countdown(self, exc)) from exc
        result = _probe_llm_failure(parsed.run_id, _describe_error(exc))
    except Exception as exc:
        log.exception("probe LLM request for run %s failed", parsed.run_id)
        result = _probe_llm_failure(parsed.run_id, _describe_error(exc))
    written = sum(1 for answer in result.carveouts if answer.criterion)
    log.info(
        "probe run %s: %d of %d carve-outs written, rewording %s",
        parsed.run_id,
        written,
        len(parsed.items),
        "written" if result.rewording else "not written",
    )
    _send_or_retry(self, RECORD_PROBE_LLM_TASK, result.to_dict())


def suggest_answer(writer: TwinWriter | None, request: SuggestRequest) -> SuggestResult:
    """Rewrites of one clause from the LLM, checked (``worker.suggest``); the pure part of
    ``suggest_rewrites``. A refusal of the prompt answers with the reason; transient failures
    propagate so the task retries."""
    if writer is None:
        return _suggest_failure(request.run_id, twins.MISSING_TWIN_BACKEND)
    clause = next((c for c in parse_clauses(request.policy) if c.key == request.clause_key), None)
    if clause is None:
        return _suggest_failure(
            request.run_id, f"The policy has no clause {request.clause_key!r} to rewrite."
        )
    prompt = build_suggest_prompt(
        request.policy, clause.where, clause.text, request.mismatches, request.candidates
    )
    record = f"{SUGGEST_PROMPT_VERSION}\n{prompt}"
    try:
        raw = writer.write(prompt)
    except OpenAIBackendError as exc:
        return SuggestResult(
            request.run_id, writer.model_name, record, [], error=f"The model server refused: {exc}"
        )
    candidates, problems = parse_suggestions(raw, clause.text, request.candidates)
    return SuggestResult(request.run_id, writer.model_name, record, candidates, problems)


def _suggest_failure(run_id: int, error: str) -> SuggestResult:
    writer = models.writer
    return SuggestResult(run_id, writer.model_name if writer else "", "", [], error=error)


@app.task(  # type: ignore[untyped-decorator]
    name=SUGGEST_TASK,
    bind=True,
    max_retries=_config().task_max_retries,
)
def suggest_rewrites(self: Task, request: dict[str, Any]) -> None:
    """Write rewrites of a clause (a ``SuggestRequest`` dict); send the ``SuggestResult`` to
    ``record_suggest``. Every path answers, as ``probe_llm`` does: a malformed request, a
    missing backend, a server that stays down, a lost worker and a bug give an ``error``."""
    try:
        parsed = SuggestRequest.from_dict(request)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("malformed suggest request: %s", exc)
        if isinstance(request, dict) and "run_id" in request:
            failed = _suggest_failure(int(request["run_id"]), f"Malformed request: {exc}")
            _send(RECORD_SUGGEST_TASK, failed.to_dict())
        return
    if _redelivered(self):
        died = _suggest_failure(
            parsed.run_id,
            "A worker process died while writing these rewrites (out of memory is likely; see "
            "the GPU worker's log). Ask again.",
        )
        _send_or_retry(self, RECORD_SUGGEST_TASK, died.to_dict())
        return
    try:
        result = suggest_answer(models.get_twin_writer(), parsed)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=_countdown(self, exc)) from exc
        result = _suggest_failure(parsed.run_id, _describe_error(exc))
    except Exception as exc:
        log.exception("suggest request for run %s failed", parsed.run_id)
        result = _suggest_failure(parsed.run_id, _describe_error(exc))
    log.info("suggest run %s: %d candidates written", parsed.run_id, len(result.candidates))
    _send_or_retry(self, RECORD_SUGGEST_TASK, result.to_dict())


@app.task(name=DESCRIBE_TASK, ignore_result=False)  # type: ignore[untyped-decorator]
def describe() -> dict[str, Any]:
    """The loaded scorer's ``WorkerInfo`` as a dict (loads it if needed)."""
    info: dict[str, Any] = models.get_scorer().info.to_dict()
    return info
