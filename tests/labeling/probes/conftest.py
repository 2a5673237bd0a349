"""A version with an evaluation set, a captured explain broker, the CPU baseline scoring captured
requests in this process (the worker's own ``explain_request``), and the baseline's formula
applied by hand for figures computed independently of the probe code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from tests.labeling.conftest import make_sample_set

PROBE_POLICY = """# Abuse and threats — probe test policy

## Overview
This policy finds abuse and threats aimed at a specific person.

## Definition of Terms
- **Target**: a specific, identifiable person.

## Interpretation of Language
- Read insults literally; quoted abuse counts only when endorsed.

## Definition of Labels

### (AB) Abuse
#### Includes
- Insults calling a person stupid, worthless or a loser.
- Instructions for repairing the periscope of a submarine.
#### Excludes
- Criticism of ideas, research or public work.

### (TH) Threats
#### Includes
- Threats to physically hurt a person.
"""
DEAD = "label/AB/includes/2"  # the periscope: no item's maximum
TEXTS = [
    "You are a worthless idiot, Sam, and everyone hates you.",
    "Shut up, you stupid pathetic loser Alex.",
    "I will hurt you, Jordan, if you show up tomorrow.",
    "I am going to break your legs, Kim, and you will bleed.",
    "The paper's methodology is weak and the conclusions do not follow.",
    "Lovely weather in Lisbon today.",
    "How often should I water my fern? The leaves are turning brown.",
    "Move your cactus closer to the window; it needs more light.",
    "Our team shipped the release on time.",
    "Critique of the minister's published budget: the numbers do not add up.",
]
TAGS = ["abuse", "abuse", "threat", "threat", "critique", "", "plants", "plants", "", "critique"]

# (variant key, item text) -> (label, margin); None label: that score failed.
Rule = Callable[[str, str], tuple[int | None, float | None]]


def make_probe_version(
    author: Any, texts: list[str] = TEXTS, *, text: str = PROBE_POLICY, tags: list[str] = TAGS
) -> Any:
    """A version of a new policy whose evaluation set (chosen) holds ``texts``."""
    from labeling.models import Item, PolicyEvaluation
    from policies.models import Policy, Version

    policy = Policy.objects.create(name=f"Probe {Policy.objects.count()}", created_by=author)
    version = Version.objects.create(policy=policy, number=1, text=text, author=author)
    sample_set = make_sample_set(author, texts, name="Probe set")
    for item, tag in zip(sample_set.items.order_by("row_number"), tags, strict=False):
        Item.objects.filter(pk=item.pk).update(tag=tag)
    PolicyEvaluation.objects.create(policy=policy, sample_set=sample_set, chosen_by=author)
    return version


@pytest.fixture
def probe_sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Explain requests captured instead of sent to a broker."""
    from labeling.explain import broker

    requests: list[dict[str, Any]] = []
    monkeypatch.setattr(broker, "send_explain_request", requests.append)
    return requests


@pytest.fixture(scope="session")
def embedder() -> Any:
    from worker.config import default_embedding_model
    from worker.embedding import SentenceEmbedder

    return SentenceEmbedder(default_embedding_model())


@pytest.fixture(scope="session")
def scorer(embedder: Any) -> Any:
    """The CPU baseline, exactly as the model worker loads it."""
    from worker.embedding import EmbeddingScorer

    return EmbeddingScorer(embedder)


@contextmanager
def committed(capture: Any) -> Iterator[None]:
    with capture(execute=True):
        yield


def deliver(sent: list[dict[str, Any]], capture: Any, answer: Callable[[dict], dict]) -> list[str]:
    """Answer every captured request (and those the answers send) until none is left."""
    from labeling.tasks import record_explain

    actions = []
    while sent:
        request = sent.pop(0)
        with committed(capture):
            actions.append(record_explain(answer(request)))
    return actions


def by_scorer(scorer: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The answer the model worker sends: ``worker.tasks.explain_request`` on ``scorer``."""
    from worker.contract import ExplainRequest
    from worker.tasks import explain_request

    return lambda request: explain_request(scorer, ExplainRequest.from_dict(request)).to_dict()


def by_rule(rule: Rule, *, error: str = "") -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The answer a worker would send, scored by ``rule`` (or failed with ``error``)."""
    from worker.contract import ExplainRequest, ExplainResult, VariantOutcome, WorkerInfo

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        req = ExplainRequest.from_dict(request)
        outcomes = []
        for v in [] if error else req.variants:
            for item in req.items:
                label, margin = rule(v.key, item.text)
                p1 = None if margin is None else float(1 / (1 + np.exp(-margin)))
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
            model_seconds=0.1,
            error=error,
        ).to_dict()

    return answer


def formula_labels(embedder: Any, policy: str, contents: list[str]) -> list[int]:
    """The baseline's labels from its documented formula, by hand: per label,
    ``max inc - max(max exc, TAU)`` (its own Excludes, else every Excludes, else -1), the
    best label's margin, label 1 iff it is >= 0. Only the criteria are read with the worker's
    reader (``extract_criteria``); the embedding and the arithmetic are this function's."""
    from worker.embedding import TAU, extract_criteria

    _, includes, excludes = extract_criteria(policy)
    if not includes:
        return [0] * len(contents)
    content = embedder.embed(contents).astype(np.float64)
    inc = content @ embedder.embed([c.text for c in includes]).astype(np.float64).T
    exc = (
        content @ embedder.embed([c.text for c in excludes]).astype(np.float64).T
        if excludes
        else np.zeros((len(contents), 0))
    )
    out = []
    for row in range(len(contents)):
        best = -np.inf
        for code in dict.fromkeys(c.label for c in includes):
            inc_cols = [j for j, c in enumerate(includes) if c.label == code]
            own = [j for j, c in enumerate(excludes) if c.label == code] or list(
                range(len(excludes))
            )
            worst = max(float(exc[row, own].max()) if own else -1.0, TAU)
            best = max(best, float(inc[row, inc_cols].max()) - worst)
        out.append(int(best >= 0))
    return out
