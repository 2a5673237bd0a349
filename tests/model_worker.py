"""The model worker for tests: exactly the command ``bin/run-studio`` runs
(``worker.celery_app.celery_worker_argv``), optionally with a deterministic fake model.

    python -m tests.model_worker -A worker.celery_app worker -Q gpu ...

With ``COPE_TEST_FAKE_SCORER=1`` the worker loads ``FakeScorer`` instead of the configured
backend: it takes ``COPE_TEST_FAKE_LOAD_SECONDS`` to load (a slow model) and
``COPE_TEST_FAKE_SECONDS_PER_ITEM`` per item, and labels by ``fake_p1``. Only this test entry
point reads those variables; the worker itself has no way to select the fake.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Sequence

from worker.base import Score
from worker.contract import WorkerInfo


def fake_p1(policy: str, content: str) -> float:
    """Deterministic in (policy, content): the tests compute the expected labels with it."""
    digest = hashlib.sha256(f"{policy}\x00{content}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class FakeScorer:
    def __init__(self, seconds_per_item: float) -> None:
        self.seconds_per_item = seconds_per_item
        self.info = WorkerInfo("fake", "tests/fake-scorer", "1", "cpu", weak=False)

    def score(self, policy: str, contents: Sequence[str]) -> list[Score]:
        time.sleep(self.seconds_per_item * len(contents))
        return [Score.from_p1(fake_p1(policy, content)) for content in contents]


def _install_fake() -> None:
    import worker.tasks

    load_seconds = float(os.environ.get("COPE_TEST_FAKE_LOAD_SECONDS", "0"))
    per_item = float(os.environ.get("COPE_TEST_FAKE_SECONDS_PER_ITEM", "0"))

    def load(config: object) -> FakeScorer:
        time.sleep(load_seconds)  # a model that takes this long to load, in every new process
        return FakeScorer(per_item)

    worker.tasks.load_scorer = load  # type: ignore[assignment]


def main() -> None:
    if os.environ.get("COPE_TEST_FAKE_SCORER") == "1":
        _install_fake()
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
