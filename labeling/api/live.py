"""Live scoring: one synchronous round trip web → broker → model worker → web.

The Try box and the labeling API need an answer while the person (or the platform) waits, so
a live request does not go through a job: it is sent by task name to the ``gpu_live`` queue,
which every model worker consumes before ``gpu`` (bulk chunks), and its answer comes back
through the Celery result backend (Redis, or files next to the filesystem broker). The model
host still never sees the database, and nothing is stored: the answer is read once and removed.

Content over CoPE's token budget is never truncated: it is refused per item before it is sent
when the web side can count it (``COPE_TOKENIZER`` for an exact count, a marked estimate
otherwise), and a worker that finds an item too long answers for that item alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings

from cope_studio.celery import app as celery_app
from policies.tokens import _load_tokenizer, count_policy_tokens, estimate_tokens
from worker.contract import (
    LIVE_QUEUE,
    SCORE_LIVE_TASK,
    ContractError,
    LiveOutcome,
    LiveRequest,
    LiveResult,
    WorkerInfo,
)

# How often a wait looks at a file result backend (Redis answers by pub/sub instead).
FILE_POLL_SECONDS = 0.001


class LiveError(Exception):
    """A live request that got no usable answer; the message is shown as it is."""


class NoAnswer(LiveError):
    """No model worker answered in time."""


@dataclass(frozen=True)
class LiveItem:
    """One content's answer. ``label``/``p1`` are None when it was not scored (``error``)."""

    content: str
    label: int | None
    p1: float | None
    error: str = ""
    too_long: bool = False

    @property
    def ok(self) -> bool:
        return self.label is not None


@dataclass(frozen=True)
class LiveAnswer:
    items: list[LiveItem]
    worker: WorkerInfo | None  # None when nothing was sent (every item over the budget)
    model_seconds: float  # the worker's scoring time
    seconds: float  # the whole round trip, as the web side saw it


# Token budget ---------------------------------------------------------------------------------


def _content_tokens(content: str) -> tuple[int, bool]:
    name = settings.COPE_TOKENIZER
    counter = _load_tokenizer(name) if name else None
    if counter is not None:
        return max(int(counter(content)) - 1, 0), True  # the counter adds BOS; the policy has it
    return estimate_tokens(content) - 1, False


def budget_errors(policy: str, contents: list[str]) -> dict[int, str]:
    """Items over CoPE's token budget under ``policy``, by index, each with its message."""
    policy_count = count_policy_tokens(policy)
    limit = policy_count.limit
    if policy_count.over_budget:
        message = (
            f"Policy too long for CoPE: {policy_count.display} with the prompt template before "
            f"any content, limit {limit:,}. Nothing was scored; shorten the policy."
        )
        return dict.fromkeys(range(len(contents)), message)
    errors: dict[int, str] = {}
    for index, content in enumerate(contents):
        tokens, exact = _content_tokens(content)
        total = policy_count.tokens + tokens
        if total > limit:
            counted = f"{total:,} tokens" if exact and policy_count.exact else f"≈ {total:,}"
            how = "" if exact and policy_count.exact else " (estimated: set COPE_TOKENIZER)"
            errors[index] = (
                f"Content too long for CoPE: {counted} with the policy and prompt template"
                f"{how}, limit {limit:,}. It was not truncated and not scored; shorten it."
            )
    return errors


# The round trip ----------------------------------------------------------------------------


def _backend() -> Any:
    """This thread's result backend (Celery keeps one per thread)."""
    if not celery_app.conf.result_backend:
        raise LiveError(
            "No result backend is configured (CELERY_RESULT_BACKEND), so a live answer cannot "
            "come back from the model workers."
        )
    return celery_app.backend


@dataclass(frozen=True)
class Pending:
    """A live request on its way: wait for it with ``wait``."""

    task_id: str
    contents: list[str]
    sent_at: float
    deadline: float


def send(*, policy: str, contents: list[str], timeout: float | None = None) -> Pending:
    """Send one live request (no database involved). It expires unscored after ``timeout``:
    a worker that gets to it later drops it instead of answering nobody."""
    timeout = float(timeout or settings.COPE_LIVE_TIMEOUT)
    _backend()
    started = time.perf_counter()
    try:
        result = celery_app.send_task(
            SCORE_LIVE_TASK,
            args=[LiveRequest(policy=policy, contents=contents).to_dict()],
            queue=LIVE_QUEUE,
            expires=timeout,
            ignore_result=False,  # the worker stores the answer, which is how it comes back
        )
    except Exception as exc:  # kombu's connection errors vary by transport
        raise LiveError(f"The message broker could not take the request: {exc}") from exc
    return Pending(
        task_id=result.id, contents=contents, sent_at=started, deadline=started + timeout
    )


_READY = ("SUCCESS", "FAILURE", "REVOKED")


def _stored(backend: Any, task_id: str) -> dict[str, Any] | None:
    """The stored answer, or None while there is none. A file backend may show a result file
    half-written: that reads as none yet."""
    try:
        meta: dict[str, Any] = backend.get_task_meta(task_id, cache=False)
    except (ValueError, UnicodeDecodeError):
        return None
    return meta if meta.get("status") in _READY else None


def _wait_for_meta(backend: Any, pending: Pending) -> dict[str, Any] | None:
    remaining = pending.deadline - time.perf_counter()
    if hasattr(backend, "result_consumer"):  # Redis: woken by pub/sub, no polling
        try:
            backend.app.AsyncResult(pending.task_id, backend=backend).get(
                timeout=max(remaining, 0.001), propagate=False, disable_sync_subtasks=False
            )
        except CeleryTimeout:
            return None
        return _stored(backend, pending.task_id)
    meta = _stored(backend, pending.task_id)
    while meta is None and time.perf_counter() < pending.deadline:
        time.sleep(FILE_POLL_SECONDS)
        meta = _stored(backend, pending.task_id)
    return meta


def wait(pending: Pending) -> LiveAnswer:
    """Wait for ``pending`` until its deadline; raises ``LiveError`` (``NoAnswer``) with the
    message to show when there is no usable answer. The stored answer is removed once read."""
    backend = _backend()
    try:
        meta = _wait_for_meta(backend, pending)
    finally:
        seconds = time.perf_counter() - pending.sent_at
        try:
            backend.forget(pending.task_id)  # also stops a Redis subscription after a timeout
        except OSError:
            pass  # a file backend with no file yet
    if meta is None:
        raise NoAnswer(
            f"No model worker answered within {seconds:.0f} s: none is running on the "
            f"'{LIVE_QUEUE}' queue (model workers consume -Q {LIVE_QUEUE},gpu), or every one is "
            "busy with a long chunk. Nothing was stored; try again."
        )
    if meta["status"] != "SUCCESS":
        raise LiveError(f"The model worker could not answer: {meta.get('result')!s}")
    try:
        result = LiveResult.from_dict(meta["result"])
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        raise LiveError(f"The model worker sent an answer this studio cannot read: {exc}") from exc
    if result.error:
        raise LiveError(f"The model worker could not score: {result.error}")
    if len(result.outcomes) != len(pending.contents):
        raise LiveError(
            f"The model worker answered {len(result.outcomes)} items for {len(pending.contents)}."
        )
    return LiveAnswer(
        items=[_item(c, o) for c, o in zip(pending.contents, result.outcomes, strict=True)],
        worker=result.worker,
        model_seconds=result.model_seconds,
        seconds=seconds,
    )


def _item(content: str, outcome: LiveOutcome) -> LiveItem:
    return LiveItem(
        content=content,
        label=outcome.label,
        p1=outcome.p1,
        error=outcome.error or ("" if outcome.label is not None else "no label from the worker"),
        too_long=outcome.too_long,
    )


class Sent:
    """One policy's live request, with the items refused before sending kept in place."""

    def __init__(
        self,
        *,
        policy: str,
        contents: list[str],
        timeout: float | None = None,
        refused: dict[int, str] | None = None,
    ) -> None:
        self.contents = contents
        # ``refused``: the caller has checked the budget already (``budget_errors``).
        self.refused = budget_errors(policy, contents) if refused is None else refused
        self.started = time.perf_counter()
        fitting = [c for i, c in enumerate(contents) if i not in self.refused]
        self.pending = send(policy=policy, contents=fitting, timeout=timeout) if fitting else None

    def answer(self) -> LiveAnswer:
        """Every content's item in order; raises ``LiveError`` when the worker gave none."""
        answered = wait(self.pending) if self.pending is not None else None
        scored = iter(answered.items if answered is not None else [])
        items = [
            LiveItem(content=c, label=None, p1=None, error=self.refused[i], too_long=True)
            if i in self.refused
            else next(scored)
            for i, c in enumerate(self.contents)
        ]
        return LiveAnswer(
            items=items,
            worker=answered.worker if answered is not None else None,
            model_seconds=answered.model_seconds if answered is not None else 0.0,
            seconds=answered.seconds if answered is not None else 0.0,
        )


def score(*, policy: str, contents: list[str], timeout: float | None = None) -> LiveAnswer:
    """Label ``contents`` under ``policy`` now (send, then wait). Items over the token budget
    come back unscored with their message; raises ``LiveError`` when no answer came."""
    return Sent(policy=policy, contents=contents, timeout=timeout).answer()


# The Try box --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrySide:
    answer: LiveAnswer | None
    error: str = ""  # why this side has no answer (no worker, the worker failed)


@dataclass(frozen=True)
class TryRow:
    index: int
    content: str
    a: LiveItem | None
    b: LiveItem | None

    @property
    def too_long(self) -> bool:
        return any(side is not None and side.too_long for side in (self.a, self.b))

    @property
    def disagree(self) -> bool:
        return bool(self.a and self.b and self.a.ok and self.b.ok and self.a.label != self.b.label)


@dataclass(frozen=True)
class TryResult:
    rows: list[TryRow]
    a: TrySide
    b: TrySide | None  # None: no twin to compare with
    seconds: float

    @property
    def disagreements(self) -> int:
        return sum(1 for row in self.rows if row.disagree)

    def _labeled(self, row: TryRow) -> bool:
        """Labeled on every side there is: A, and B when there is a twin."""
        sides = [row.a] if self.b is None else [row.a, row.b]
        return all(side is not None and side.ok for side in sides)

    @property
    def labeled(self) -> int:
        """Rows labeled on both sides (on A when there is no twin): the only ones A and B can
        agree or disagree on."""
        return sum(1 for row in self.rows if self._labeled(row))

    @property
    def agreements(self) -> int:
        return self.labeled - self.disagreements

    @property
    def too_long(self) -> int:
        return sum(1 for row in self.rows if row.too_long)

    @property
    def not_labeled(self) -> int:
        """Rows left unlabeled for another reason than length (an error, no answer)."""
        return sum(1 for row in self.rows if not self._labeled(row) and not row.too_long)

    @property
    def worker(self) -> WorkerInfo | None:
        for side in (self.a, self.b):
            if side is not None and side.answer is not None and side.answer.worker is not None:
                return side.answer.worker
        return None


def _side(sent: Sent | LiveError) -> TrySide:
    if isinstance(sent, LiveError):
        return TrySide(answer=None, error=str(sent))
    try:
        return TrySide(answer=sent.answer())
    except LiveError as exc:
        return TrySide(answer=None, error=str(exc))


def _send_side(policy: str, contents: list[str]) -> Sent | LiveError:
    try:
        return Sent(policy=policy, contents=contents)
    except LiveError as exc:
        return exc


def try_contents(*, text_a: str, text_b: str, contents: list[str]) -> TryResult:
    """Label ``contents`` under A and (when there is one) the twin B, both sent before either
    is awaited, so two workers answer them at once. Nothing is stored."""
    started = time.perf_counter()
    sent_a = _send_side(text_a, contents)
    sent_b = _send_side(text_b, contents) if text_b.strip() else None
    side_a = _side(sent_a)
    side_b = _side(sent_b) if sent_b is not None else None

    def items(side: TrySide | None) -> list[LiveItem | None]:
        if side is None or side.answer is None:
            return [None] * len(contents)
        return list(side.answer.items)

    rows = [
        TryRow(index=i + 1, content=c, a=a, b=b)
        for i, (c, a, b) in enumerate(zip(contents, items(side_a), items(side_b), strict=True))
    ]
    return TryResult(rows=rows, a=side_a, b=side_b, seconds=time.perf_counter() - started)
