"""A loopback OpenAI-compatible server for tests: /v1/completions and /v1/chat/completions.

Completions answer with log-probabilities that depend only on the CONTENT of the CoPE prompt
(``expected_p1``), so a test can check the client's arithmetic exactly. Special contents:
``ONLY_ONE`` puts only "1" among the top tokens, ``NO_DIGITS`` neither "0" nor "1".
Chat completions answer a twin prompt with ``twin_text``, and a carve-out prompt
(``worker.carveouts``: the content between ``<<<CONTENT`` and ``CONTENT>>>``) with
``carveout_answer(content)``: one line naming the content's digest, or for the special contents
``MALFORMED_ANSWER`` two lines, ``LONG_ANSWER`` 400 characters, ``EMPTY_ANSWER`` nothing.
A suggest prompt (``worker.suggest``: it has a ``<<<MISMATCHES`` block) gets ``suggest_text``
when set, else ``suggest_answer(prompt)``: the asked number of rewrites of the clause as JSON.
The server can be told to fail the next requests (429/5xx, optional Retry-After) and refuses a
request holding a prompt longer than ``context_chars`` with vLLM's context-length 400.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTENT_START = "CONTENT\n=======\n\n"
CONTENT_END = "\n\n\nANSWER\n======\n\n"
OTHER_MASS = 0.2  # probability the fake puts on a non-digit token


def content_of(prompt: str) -> str:
    start = prompt.rfind(CONTENT_START)
    end = prompt.rfind(CONTENT_END)
    if start < 0 or end < 0:
        return prompt
    return prompt[start + len(CONTENT_START) : end]


def expected_p1(content: str, policy: str = "") -> float:
    """The p1 the fake model means for ``content``: in [0.05, 0.95], deterministic. A policy
    holding ``FLIP`` turns it into ``1 - p1`` (so variants of a policy score differently)."""
    if "VIOLENT" in content:
        p1 = 0.9
    else:
        digest = int(hashlib.sha256(content.encode("utf-8")).hexdigest()[:8], 16)
        p1 = 0.05 + 0.9 * digest / 0xFFFFFFFF
    return 1 - p1 if "FLIP" in policy else p1


CARVEOUT_START = "<<<CONTENT\n"
CARVEOUT_END = "\nCONTENT>>>"


def carveout_content(prompt: str) -> str | None:
    """The content block of a carve-out prompt; None for any other prompt."""
    start, end = prompt.rfind(CARVEOUT_START), prompt.rfind(CARVEOUT_END)
    if start < 0 or end < start:
        return None
    return prompt[start + len(CARVEOUT_START) : end]


def carveout_answer(content: str) -> str:
    """What the fake LLM writes for a carve-out of ``content`` (see the module docstring)."""
    if "MALFORMED_ANSWER" in content:
        return "Posts quoting a song.\nAlso any other quotation."
    if "LONG_ANSWER" in content:
        return "Posts " + "that quote a lyric " * 21
    if "EMPTY_ANSWER" in content:
        return "  "
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:8]
    return f"- Criterion: Posts that recount the exact case {digest} as reported speech."


SUGGEST_BLOCK = "\n<<<MISMATCHES\n"
_ASKED = re.compile(r"Write (\d+) different rewrites")


def suggest_clause(prompt: str) -> str:
    """The clause's words in a suggest prompt (the CLAUSE block's last line)."""
    start, end = prompt.find("<<<CLAUSE\n"), prompt.find("\nCLAUSE>>>")
    return prompt[start:end].split("\n")[-1] if 0 <= start < end else ""


def suggest_answer(prompt: str) -> str:
    """What the fake LLM writes for a suggest prompt: as many candidates as asked, each a
    distinct rewrite of the clause with a paraphrase and a rationale, as JSON."""
    asked = _ASKED.search(prompt)
    clause = suggest_clause(prompt).rstrip(".")
    candidates = [
        {
            "rewrite": f"{clause}, case {i} made explicit.",
            "paraphrase": f"Case {i} spelled out: {clause.lower()}.",
            "rationale": f"Settles the mismatches by naming case {i}.",
        }
        for i in range(1, (int(asked.group(1)) if asked else 1) + 1)
    ]
    return json.dumps({"candidates": candidates})


def policy_of(prompt: str) -> str:
    start = prompt.find("POLICY\n======\n\n")
    end = prompt.rfind(CONTENT_START)
    return prompt[start:end] if start >= 0 and end >= 0 else ""


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeState:
    api_key: str = ""
    context_chars: int | None = None
    twin_text: str = ""
    suggest_text: str = ""
    failures: list[tuple[int, str | None]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _top_logprobs(content: str, policy: str = "") -> dict[str, float]:
    if "NO_DIGITS" in content:
        return {"Hello": math.log(0.6), " the": math.log(0.4)}
    if "ONLY_ONE" in content:
        return {"1": math.log(0.7), "Hello": math.log(0.3)}
    p1 = expected_p1(content, policy)
    return {
        "1": math.log((1 - OTHER_MASS) * p1),
        "0": math.log((1 - OTHER_MASS) * (1 - p1)),
        " The": math.log(OTHER_MASS),
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _reply(
        self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(data).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        with state.lock:
            state.requests.append(Recorded(self.path, dict(self.headers.items()), body))
            failure = state.failures.pop(0) if state.failures else None
        if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._reply(401, {"error": {"message": "Invalid API key", "type": "auth"}})
            return
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            self._reply(status, {"error": {"message": f"fake failure {status}"}}, headers)
            return
        if self.path == "/v1/completions":
            self._completions(body)
        elif self.path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._reply(404, {"error": {"message": f"no route {self.path}"}})

    def _completions(self, body: dict[str, Any]) -> None:
        state = self.server.state
        if body.get("model") != "cope-merged":
            self._reply(
                404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}}
            )
            return
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        for prompt in prompts:
            if state.context_chars is not None and len(prompt) > state.context_chars:
                message = (
                    "This model's maximum context length is 8192 tokens. However, you requested "
                    f"{len(prompt)} tokens ({len(prompt) - 1} in the prompt, 1 in the completion)."
                )
                self._reply(400, {"object": "error", "message": message, "code": 400})
                return
        for prompt in prompts:
            if "REFUSE_ME" in content_of(prompt):  # a prompt the server will not take
                message = "The prompt contains a token sequence this server refuses."
                self._reply(400, {"object": "error", "message": message, "code": 400})
                return
        choices = []
        for index, prompt in enumerate(prompts):
            top = _top_logprobs(content_of(prompt), policy_of(prompt))
            best = max(top, key=lambda token: top[token])
            choices.append(
                {
                    "index": index,
                    "text": best,
                    "logprobs": {
                        "tokens": [best],
                        "token_logprobs": [top[best]],
                        "top_logprobs": [top],
                        "text_offset": [len(prompt)],
                    },
                    "finish_reason": "length",
                }
            )
        # Real servers may answer out of order; "index" says which prompt each choice is for.
        choices.reverse()
        self._reply(200, {"id": "cmpl-fake", "object": "text_completion", "choices": choices})

    def _chat(self, body: dict[str, Any]) -> None:
        prompt = str(body["messages"][-1]["content"])
        content = carveout_content(prompt)
        answer = self.server.state.twin_text if content is None else carveout_answer(content)
        if SUGGEST_BLOCK in prompt:
            answer = self.server.state.suggest_text or suggest_answer(prompt)
        message = {"role": "assistant", "content": answer}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        self._reply(200, {"id": "chat-fake", "object": "chat.completion", "choices": [choice]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState


class FakeOpenAIServer:
    """``with FakeOpenAIServer() as server: ... server.url`` (ends in ``/v1``)."""

    def __init__(
        self, *, api_key: str = "", context_chars: int | None = None, twin_text: str = ""
    ) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = FakeState(
            api_key=api_key, context_chars=context_chars, twin_text=twin_text
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def state(self) -> FakeState:
        return self._httpd.state

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> list[Recorded]:
        return self.state.requests

    def fail_next(self, status: int, times: int = 1, *, retry_after: str | None = None) -> None:
        with self.state.lock:
            self.state.failures.extend([(status, retry_after)] * times)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
