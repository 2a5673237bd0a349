"""A version whose deciding job the CPU baseline labeled in this process (the worker's own
``score_request`` and ``explain_request``), with a constructed ambiguous clause: A's second
Includes criterion ("harsh criticism of a book, a film or a restaurant") and B's aligned one
("mocking the way a person looks or dresses") disagree on three items, and an edit of A's
clause toward B's meaning makes the two wordings agree on them. Gold is constructed so the
edit fixes one item, breaks one, and changes one without gold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.labeling.conftest import make_sample_set
from tests.labeling.probes.conftest import (  # noqa: F401 - fixtures re-exported
    by_scorer,
    committed,
    deliver,
    embedder,
    formula_labels,
    scorer,
)

POLICY_A = """# Insults — what-if test policy

## Overview
This policy finds insults aimed at a specific person.

## Definition of Terms
- **Person**: a specific, identifiable individual.

## Interpretation of Language
- Read the words literally.

## Definition of Labels

### (IN) Insult
#### Includes
- Calling a person stupid, an idiot or a loser.
- Harsh criticism of a book, a film or a restaurant.
#### Excludes
- Friendly greetings and thanks.
"""
POLICY_B = (
    POLICY_A.replace(
        "- Calling a person stupid, an idiot or a loser.",
        "- Telling someone they are dumb, a moron or a failure.",
    )
    .replace(
        "- Harsh criticism of a book, a film or a restaurant.",
        "- Mocking the way a person looks or dresses.",
    )
    .replace("Read the words literally.", "Take the words at face value.")
)
CLAUSE = "label/IN/includes/2"
EDIT = "Mocking how a person looks, their face or their clothes."
TEXTS = [
    "You are a stupid idiot and a total loser, Sam.",
    "Alex, you absolute moron, you failed again.",
    "This film was boring and far too long.",
    "The restaurant served cold food and the waiter was rude.",
    "The book's plot makes no sense at all.",
    "Look at his ugly haircut and ridiculous clothes.",
    "She dresses like a clown and her face is weird.",
    "Thanks so much, have a lovely day!",
    "Good morning everyone, hope you are well.",
    "The weather is sunny in Lisbon today.",
    "How often should I water my fern?",
    "Our team shipped the release on time.",
]
# "" = no gold. The film review counted as an insult by the annotators (the edit breaks it),
# the mocking of clothes as one (fixed), the book review without gold (other).
GOLD = ["1", "1", "1", "0", "", "1", "1", "0", "0", "0", "0", "0"]


def score_answer(model: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The answer the model worker sends for a job's chunk: ``worker.tasks.score_request``."""
    from worker.contract import ScoreRequest
    from worker.tasks import score_request

    return lambda request: score_request(model, ScoreRequest.from_dict(request)).to_dict()


def run_job(job_sent: list[dict[str, Any]], capture: Any, model: Any) -> None:
    """Answer every captured score request (and those the answers send) in this process."""
    from labeling.tasks import record_chunk

    answer = score_answer(model)
    while job_sent:
        request = job_sent.pop(0)
        with committed(capture):
            record_chunk(answer(request))


@dataclass
class Decided:
    version: Any
    job: Any
    items: list[Any]  # the evaluation set's items, in TEXTS order


def start_job(version: Any, sample_set: Any, author: Any, capture: Any, **kw: Any) -> Any:
    from labeling.jobs import services

    with committed(capture):
        return services.start_job(
            version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=5, **kw
        )


def make_whatif_version(author: Any) -> tuple[Any, Any, list[Any]]:
    """Policy (minimum sample 10), version (A, twin B), and its evaluation set with gold:
    (version, sample set, its items in TEXTS order)."""
    from labeling.models import Item, PolicyEvaluation
    from policies.models import Policy, TwinOrigin, Version

    policy = Policy.objects.create(
        name=f"What-if {Policy.objects.count()}", created_by=author, min_sample_size=10
    )
    version = Version.objects.create(
        policy=policy, number=1, text=POLICY_A, twin_text=POLICY_B,
        twin_origin=TwinOrigin.HAND, author=author,
    )  # fmt: skip
    sample_set = make_sample_set(author, TEXTS, name="What-if set")
    items = list(sample_set.items.order_by("row_number"))
    for item, gold in zip(items, GOLD, strict=True):
        Item.objects.filter(pk=item.pk).update(expected_label=int(gold) if gold else None)
    PolicyEvaluation.objects.create(policy=policy, sample_set=sample_set, chosen_by=author)
    return version, sample_set, items


def make_decided_version(
    author: Any, sent: list, explain_sent: list, capture: Any, model: Any
) -> Decided:
    """``make_whatif_version``, its deciding job labeled by the baseline in this process, and
    the job's attribution run delivered (which names the deciding clauses)."""
    version, sample_set, items = make_whatif_version(author)
    job = start_job(version, sample_set, author, capture)
    run_job(sent, capture, model)
    deliver(explain_sent, capture, by_scorer(model))
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return Decided(version, job, items)
