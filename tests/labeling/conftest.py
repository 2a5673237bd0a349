"""Factories for sample sets and jobs, and a deterministic fake scorer.

The real Celery workers (``celery_workers``) live in the ``tests.celery_workers`` plugin, shared
with the browser tests; ``retry_locked`` and ``wait_for`` are re-exported here for the tests that
import them from this module.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.celery_workers import retry_locked, wait_for  # noqa: F401 - re-exported
from tests.conftest import POLICY_TEXT, TWIN_TEXT

# Factories ---------------------------------------------------------------------------------


def make_version(author: Any, *, name: str = "Harassment", number: int = 1, twin: str = TWIN_TEXT):
    from policies.models import Policy, TwinOrigin, Version

    policy, _ = Policy.objects.get_or_create(name=name, defaults={"created_by": author})
    return Version.objects.create(
        policy=policy,
        number=number,
        text=POLICY_TEXT,
        twin_text=twin,
        twin_origin=TwinOrigin.HAND if twin else TwinOrigin.NONE,
        author=author,
    )


def make_sample_set(author: Any, texts: list[str], *, name: str = "Sample") -> Any:
    from labeling.models import Item, SampleSet
    from labeling.samples.values import content_hash

    sample_set = SampleSet.objects.create(
        name=name, source_format="pasted", item_count=len(texts), created_by=author
    )
    Item.objects.bulk_create(
        [
            Item(
                sample_set=sample_set,
                external_id=f"row-{i}",
                text=t,
                content_hash=content_hash(t),
                row_number=i,
            )
            for i, t in enumerate(texts, start=1)
        ]
    )
    return sample_set


def fake_label(text: str, side: str) -> tuple[int | None, float | None, str]:
    """Deterministic: "insult" → 1 on both sides; "borderline" → 1 under A only; "LONG" fails."""
    if "LONG" in text:
        return None, None, "over the token budget"
    if "insult" in text:
        return 1, 0.9, ""
    if "borderline" in text:
        return (1, 0.6, "") if side == "A" else (0, 0.4, "")
    return 0, 0.1, ""


def fake_result(request: dict[str, Any], *, error: str = "") -> dict[str, Any]:
    """The ScoreResult a worker would send for ``request``, from ``fake_label``."""
    from worker.contract import ScoreOutcome, ScoreRequest, ScoreResult, WorkerInfo

    req = ScoreRequest.from_dict(request)
    outcomes = (
        [] if error else [ScoreOutcome(i.item_id, *fake_label(i.text, req.side)) for i in req.items]
    )
    return ScoreResult(
        job_id=req.job_id,
        chunk_id=req.chunk_id,
        side=req.side,
        outcomes=outcomes,
        worker=WorkerInfo("fake", "tests/fake", "1", "cpu", weak=False),
        model_seconds=0.5,
        error=error,
    ).to_dict()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Score requests captured instead of sent to a broker; a job's preparation runs inline
    (``start_job``'s on-commit callback calls ``prepare_job`` instead of queueing it)."""
    from labeling.explain import broker as explain_broker
    from labeling.jobs import broker, services

    requests: list[dict[str, Any]] = []
    monkeypatch.setattr(broker, "send_score_request", requests.append)
    monkeypatch.setattr(broker, "send_prepare_job", services.prepare_job)
    # A finished job starts an explain run; its chunks go to ``explain_sent``, never a broker.
    monkeypatch.setattr(explain_broker, "send_explain_request", lambda request: None)
    return requests


@pytest.fixture
def explain_sent(
    sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """Explain requests captured instead of sent (score requests still go to ``sent``)."""
    from labeling.explain import broker as explain_broker

    requests: list[dict[str, Any]] = []
    monkeypatch.setattr(explain_broker, "send_explain_request", requests.append)
    return requests


class FakeBroker:
    """What ``labeling.jobs.broker.look`` reports, set by a test: chunk ids in a queue, chunk ids a
    model worker holds, and how many model workers answered."""

    def __init__(self) -> None:
        self.queued: set[int] = set()
        self.held: set[int] | None = set()
        self.model_workers: int | None = 1

    def look(self) -> Any:
        from labeling.jobs.broker import BrokerView

        held = None if self.held is None else frozenset(self.held)
        return BrokerView(frozenset(self.queued), held, self.model_workers)


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    from labeling.jobs import broker as broker_module

    fake = FakeBroker()
    monkeypatch.setattr(broker_module, "look", fake.look)
    return fake


TEXTS = [
    "you are an insult to everyone, idiot",
    "I disagree with the paper's method",
    "borderline remark about someone",
    "nice weather today",
    "LONG " + "x" * 50,
    "another insult aimed at Sam",
    "borderline joke",
    "the committee's report was thorough",
]
# The same without the item that fails: a job on these succeeds (one on TEXTS ends partial).
LABELED_TEXTS = [t for t in TEXTS if "LONG" not in t]
