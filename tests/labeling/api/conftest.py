"""A model worker in this process, for the API tests that are about the web side (statuses,
schema, scopes) rather than the round trip, which tests run on the real worker."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from labeling.api import live
from tests.model_worker import fake_p1
from worker.contract import WorkerInfo

FAKE_WORKER = WorkerInfo("fake", "tests/fake-scorer", "1", "cpu", weak=False)


class FakeLiveWorker:
    """Stands in for ``live.send``/``live.wait``: labels each content by ``fake_p1`` (so a test
    can compute what it expects), and, like a real worker's tokenizer, cannot read text that
    is not valid UTF-8."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[str]]] = []
        self._policies: dict[str, str] = {}
        self._ids = itertools.count(1)

    def send(self, *, policy: str, contents: list[str], timeout: float | None = None) -> Any:
        task_id = f"fake-{next(self._ids)}"
        self._policies[task_id] = policy
        self.requests.append((policy, list(contents)))
        now = time.perf_counter()
        return live.Pending(task_id=task_id, contents=contents, sent_at=now, deadline=now + 1)

    def wait(self, pending: Any) -> live.LiveAnswer:
        policy = self._policies.pop(pending.task_id)
        try:
            for content in [policy, *pending.contents]:
                content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise live.LiveError(f"The model worker could not score: {exc}") from exc
        items = []
        for content in pending.contents:
            p1 = fake_p1(policy, content)
            items.append(live.LiveItem(content=content, label=int(p1 >= 0.5), p1=p1))
        seconds = time.perf_counter() - pending.sent_at
        return live.LiveAnswer(
            items=items, worker=FAKE_WORKER, model_seconds=seconds / 2, seconds=seconds
        )


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLiveWorker]:
    worker = FakeLiveWorker()
    monkeypatch.setattr(live, "send", worker.send)
    monkeypatch.setattr(live, "wait", worker.wait)
    yield worker
