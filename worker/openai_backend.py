"""CoPE behind an OpenAI-compatible server (e.g. vLLM serving the merged CoPE model).

Scoring uses ``/v1/completions`` with the exact CoPE prompt, ``max_tokens=1``, ``temperature=0``
and ``logprobs``: ``p1 = P("1") / (P("0") + P("1"))`` from the top log-probabilities of the one
generated position. vLLM's automatic prefix caching does the policy-prefix reuse server side.

``score_variants`` (attribution: one content set under many variants of a policy) sends the
requests variant by variant so that the server's prefix cache hits; ``margin`` is
``log P("1") - log P("0")``, the logits' difference.

Twin generation uses ``/v1/chat/completions``.

Transient failures (429, 5xx, connection errors, timeouts) are retried with exponential backoff,
honouring a short ``Retry-After``; other 4xx fail at once with the server's message. A prompt the
server refuses (too long, or anything else it rejects with 400/413/422) fails only its own item,
with the server's reason: a refused batch is split until the refused prompts are alone.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from worker.base import BackendConfigError, Score
from worker.contract import WorkerInfo
from worker.prompt import build_prompt

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# Refusals about what a request carries: one item's fault, so that item fails alone.
ITEM_REFUSALS = frozenset({400, 413, 422})
# Retry-After values above this are not slept through here: the Celery task retries later.
MAX_RETRY_AFTER_S = 30.0
_CONTEXT_ERROR = re.compile(
    r"context length|context window|maximum context|max_model_len|too many tokens|"
    r"prompt is too long|longer than the maximum|exceeds the (?:maximum|model)",
    re.I,
)


class OpenAIBackendError(RuntimeError):
    """The server refused a request (4xx other than 429): retrying cannot help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BackendUnavailable(RuntimeError):
    """The server stayed unreachable or overloaded through every retry: try again later.

    ``retry_after`` is the server's wish in seconds, when it said one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def api_root(base_url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both become ``http://host:8000/v1``."""
    url = base_url.strip().rstrip("/")
    path = httpx.URL(url).path.rstrip("/")
    if not path:
        url += "/v1"
    return url


def _server_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])
    return str(data)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from model servers, use our own backoff
    return max(0.0, seconds)


class OpenAIClient:
    """A small synchronous JSON client with retries, shared by the scorer and the twin writer."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "",
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise BackendConfigError("No server URL: set COPE_OPENAI_BASE_URL.")
        self.root = api_root(base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.root, headers=headers, timeout=timeout, transport=transport
        )
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def _delay(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2**attempt))

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON, retrying transient failures; raise ``OpenAIBackendError`` on other 4xx."""
        last = ""
        for attempt in range(self.max_retries + 1):
            final = attempt == self.max_retries
            try:
                response = self._http.post(path, json=payload)
            except httpx.TransportError as exc:  # connect/read errors and timeouts
                last = f"{type(exc).__name__}: {exc}"
                if final:
                    break
                delay = self._delay(attempt)
                log.warning("%s%s failed (%s); retry in %.1fs", self.root, path, last, delay)
                self._sleep(delay)
                continue
            if response.status_code < 400:
                data = response.json()
                if not isinstance(data, dict):
                    raise OpenAIBackendError(f"{self.root}{path} answered non-object JSON.")
                return data
            message = _server_message(response)
            if response.status_code not in RETRY_STATUSES:
                raise OpenAIBackendError(
                    f"{self.root}{path} refused the request ({response.status_code}): {message}",
                    status=response.status_code,
                )
            last = f"{response.status_code}: {message}"
            wish = _retry_after(response)
            if wish is not None and wish > MAX_RETRY_AFTER_S:
                raise BackendUnavailable(
                    f"{self.root}{path} is busy ({last}) and asks to retry after {wish:g}s.",
                    retry_after=wish,
                )
            if final:
                break
            delay = wish if wish is not None else self._delay(attempt)
            log.warning("%s%s answered %s; retry in %.1fs", self.root, path, last, delay)
            self._sleep(delay)
        raise BackendUnavailable(
            f"{self.root}{path} failed after {self.max_retries + 1} attempts; last error: {last}"
        )


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def p1_from_logprobs(choice: dict[str, Any]) -> Score:
    """``p1`` from one completions choice, renormalised over the tokens "0" and "1".

    Token spellings that strip to "0"/"1" (" 1", "▁1") count too. A digit missing from the top
    log-probabilities is taken as probability 0; with neither present the item fails.
    """
    logprobs = choice.get("logprobs") or {}
    seen: dict[str, list[float]] = {"0": [], "1": []}
    tops = logprobs.get("top_logprobs") or []
    candidates: dict[str, float] = {}
    if tops and isinstance(tops[0], dict):
        candidates.update({str(k): float(v) for k, v in tops[0].items() if v is not None})
    tokens, token_lps = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
    if tokens and token_lps and token_lps[0] is not None:
        candidates.setdefault(str(tokens[0]), float(token_lps[0]))
    for token, lp in candidates.items():
        key = token.replace("\u2581", " ").strip()
        if key in seen and math.isfinite(lp):
            seen[key].append(lp)
    if not seen["0"] and not seen["1"]:
        shown = ", ".join(repr(t) for t in list(candidates)[:5]) or repr(choice.get("text", ""))
        return Score.failed(f"The model's next token was neither 0 nor 1 (top: {shown}).")
    if not seen["1"]:
        return Score.from_p1(0.0)
    if not seen["0"]:
        return Score.from_p1(1.0)
    lp0, lp1 = _logsumexp(seen["0"]), _logsumexp(seen["1"])
    # log P("1") - log P("0") is the logits' difference: the softmax's normaliser cancels.
    return Score.from_p1(1.0 / (1.0 + math.exp(lp0 - lp1)), lp1 - lp0)


class OpenAICompletionsScorer:
    """``Scorer`` over an OpenAI-compatible ``/v1/completions`` endpoint."""

    def __init__(
        self,
        client: OpenAIClient,
        model: str,
        *,
        batch_size: int = 16,
        logprobs: int = 5,
    ) -> None:
        if not model:
            raise BackendConfigError(
                "COPE_BACKEND=openai needs COPE_OPENAI_MODEL (the served model name)."
            )
        self.client = client
        self.model = model
        self.batch_size = max(1, batch_size)
        self.logprobs = logprobs
        self.info = WorkerInfo(
            backend="openai", model_id=model, model_revision="", device=client.root
        )

    def _request(self, prompts: list[str]) -> list[dict[str, Any]]:
        data = self.client.post(
            "/completions",
            {
                "model": self.model,
                "prompt": prompts,
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": self.logprobs,
            },
        )
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) != len(prompts):
            got = len(choices) if isinstance(choices, list) else "no"
            raise OpenAIBackendError(
                f"{self.client.root}/completions returned {got} choices for {len(prompts)} prompts."
            )
        # The API allows choices in any order; "index" ties each to its prompt.
        ordered: list[dict[str, Any] | None] = [None] * len(prompts)
        for position, choice in enumerate(choices):
            index = choice.get("index", position)
            if (
                not isinstance(index, int)
                or not 0 <= index < len(prompts)
                or ordered[index] is not None
            ):
                raise OpenAIBackendError(f"Choice index {index!r} does not match a prompt.")
            ordered[index] = choice
        return [c for c in ordered if c is not None]

    def _score_batch(self, prompts: list[str]) -> list[Score]:
        """Score a batch; a batch the server refuses for its content (400, 413, 422: a prompt
        too long, or one the server will not take) is split in halves until the refused
        prompts are alone, and each of those fails with the server's reason while the rest of
        the batch is labeled. Other refusals (401, 404: a setting is wrong) fail the chunk."""
        try:
            return [p1_from_logprobs(c) for c in self._request(prompts)]
        except OpenAIBackendError as exc:
            if exc.status not in ITEM_REFUSALS:
                raise
            if len(prompts) == 1:
                if _CONTEXT_ERROR.search(str(exc)):
                    return [Score.failed(f"Too long for the model's context: {exc}")]
                return [Score.failed(f"The model server refused this item: {exc}")]
        half = len(prompts) // 2
        return self._score_batch(prompts[:half]) + self._score_batch(prompts[half:])

    def score(self, policy: str, contents: Sequence[str]) -> list[Score]:
        prompts = [build_prompt(policy, content) for content in contents]
        scores: list[Score] = []
        for start in range(0, len(prompts), self.batch_size):
            scores.extend(self._score_batch(prompts[start : start + self.batch_size]))
        return scores

    def score_variants(self, policies: Sequence[str], contents: Sequence[str]) -> list[list[Score]]:
        """Variant by variant: all contents of one variant in consecutive requests, the
        variants in text order (those sharing a longer beginning next to each other), so the
        server's prefix cache (vLLM's automatic prefix caching) holds the variant's prompt
        prefix while its contents run. A text given twice is sent once. Results come back in
        the caller's order."""
        order = sorted(dict.fromkeys(policies))
        scored = {policy: self.score(policy, contents) for policy in order}
        return [list(scored[policy]) for policy in policies]


class OpenAIChatTwinWriter:
    """``TwinWriter`` over an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    def __init__(
        self,
        client: OpenAIClient,
        model: str,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> None:
        if not model:
            raise BackendConfigError(
                "COPE_TWIN_BACKEND=openai needs COPE_TWIN_OPENAI_MODEL (the served model name)."
            )
        self.client = client
        self.model_name = model
        self.temperature = temperature
        self.max_tokens = max_tokens

    def write(self, prompt: str) -> str:
        # A twin is about as long as the policy, which is most of the prompt (~4 chars a token).
        max_tokens = self.max_tokens or min(16384, len(prompt) // 3 + 512)
        data = self.client.post(
            "/chat/completions",
            {
                "model": self.model_name,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": self.temperature,
                "max_tokens": max_tokens,
            },
        )
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise OpenAIBackendError(
                f"{self.client.root}/chat/completions answered without a message."
            ) from exc
        if data["choices"][0].get("finish_reason") == "length":
            log.warning("twin hit max_tokens=%d and may be cut short", max_tokens)
        return str(content or "")
