"""A finished job built directly (labels written, no worker), a captured explain broker, and
the answer a worker would send from a rule the test chooses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import POLICY_TEXT, TWIN_TEXT
from tests.labeling.conftest import make_sample_set, make_version

# (variant key, item text) -> (label, margin); None label: that score failed.
Rule = Callable[[str, str], tuple[int | None, float | None]]


def make_finished_job(
    author: Any,
    rows: list[tuple[str, int | None, int | None]],
    *,
    text_a: str = POLICY_TEXT,
    text_b: str = TWIN_TEXT,
    status: str = "succeeded",
) -> Any:
    """A job over ``rows`` (text, label A, label B), finished with those labels."""
    from django.utils import timezone

    from labeling.models import Job, Label, ReviewTask
    from policies.models import Version

    version = make_version(author, twin=text_b, number=Version.objects.count() + 1)
    sample_set = make_sample_set(author, [t for t, _, _ in rows])
    job = Job.objects.create(
        version=version,
        sample_set=sample_set,
        status=status,
        text_a=text_a,
        text_b=text_b,
        item_count=len(rows),
        created_by=author,
        backend="fake",
        prepared_at=timezone.now(),
        finished_at=timezone.now(),
    )
    items = list(sample_set.items.order_by("row_number"))
    Label.objects.bulk_create(
        [
            Label(job=job, item=item, side=side, label=label, p1=None if label is None else 0.5)
            for item, (_, la, lb) in zip(items, rows, strict=True)
            for side, label in (("A", la), ("B", lb))
        ]
    )
    # The job's finish opens a review task per mismatch (both labels, and they differ).
    ReviewTask.objects.bulk_create(
        [
            ReviewTask(
                job=job, item=item, policy=version.policy, label_a=la, label_b=lb,
                p1_a=float(la), p1_b=float(lb),
            )
            for item, (_, la, lb) in zip(items, rows, strict=True)
            if la is not None and lb is not None and la != lb
        ]
    )  # fmt: skip
    return job


@pytest.fixture
def explain_sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Explain requests captured instead of sent to a broker."""
    from labeling.explain import broker

    requests: list[dict[str, Any]] = []
    monkeypatch.setattr(broker, "send_explain_request", requests.append)
    return requests


def answer(request: dict[str, Any], rule: Rule, *, error: str = "") -> dict[str, Any]:
    """The ExplainResult a worker would send for ``request``, scored by ``rule``."""
    from worker.contract import ExplainRequest, ExplainResult, VariantOutcome, WorkerInfo

    req = ExplainRequest.from_dict(request)
    outcomes = []
    for v in [] if error else req.variants:
        for item in req.items:
            label, margin = rule(v.key, item.text)
            p1 = None if margin is None else 1 / (1 + 2.718281828 ** (-margin))
            outcomes.append(
                VariantOutcome(
                    v.key, item.item_id, label, p1, margin, "" if label is not None else "boom"
                )
            )
    return ExplainResult(
        run_id=req.run_id,
        chunk_id=req.chunk_id,
        outcomes=outcomes,
        worker=WorkerInfo("fake", "tests/fake", "1", "cpu", weak=False),
        model_seconds=0.25,
        error=error,
    ).to_dict()
