"""Variant scoring on a tiny random Gemma2: the shared prefix once, each variant's tail, and the
same p(1) as one full prompt per forward for every variant and content."""

from __future__ import annotations

import random
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tests.worker.tiny_models import TinyCope, random_text  # noqa: E402
from worker.base import VariantScorer  # noqa: E402
from worker.clauses import parse_clauses, remove_clause, replace_clause  # noqa: E402
from worker.cope import CopeScorer, load_cope  # noqa: E402
from worker.cope_variants import common_prefix, plan_groups  # noqa: E402
from worker.variants import build_variants, distinct  # noqa: E402

pytestmark = pytest.mark.model

TOLERANCE = 1e-4


def _policy(rng: random.Random) -> str:
    parts = ["# Test policy", "", "## Overview", "", random_text(rng, 20), ""]
    parts += ["## Definition of Terms", "", "- " + random_text(rng, 10), ""]
    parts += ["## Definition of Labels", "", "### (TP1) Test label", "", "#### Includes", ""]
    parts += ["- " + random_text(rng, 12) for _ in range(6)]
    parts += ["", "#### Excludes", "", "- " + random_text(rng, 12), "- " + random_text(rng, 12)]
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def scorer(tiny_cope: TinyCope) -> CopeScorer:
    return load_cope(merged_path=str(tiny_cope.merged), device="cpu", max_batch_size=3)


@pytest.fixture(scope="module")
def policy() -> str:
    return _policy(random.Random(21))


@pytest.fixture(scope="module")
def contents() -> list[str]:
    rng = random.Random(5)
    return [random_text(rng, n) for n in (4, 17, 1, 30, 9)] + [""]


def _p1(scores: list[Any]) -> list[float]:
    assert all(s.error == "" and s.p1 is not None for s in scores), scores
    return [float(s.p1) for s in scores]


def test_variant_scores_equal_full_prompts_for_every_variant_and_content(
    scorer: CopeScorer, policy: str, contents: list[str]
) -> None:
    clauses = parse_clauses(policy)
    assert len(clauses) == 10
    window = scorer.model.config.sliding_window
    assert len(scorer._prefix_ids(policy)) > 4 * window  # sliding layers cut at many points
    first, last = clauses[0], clauses[-1]
    variants = [
        policy,
        remove_clause(policy, first),  # differs at the very first clause
        remove_clause(policy, last),  # differs at the last one
        replace_clause(policy, clauses[4], "- " + random_text(random.Random(3), 14)),
        replace_clause(policy, last, "- " + random_text(random.Random(4), 5)),
        policy,  # identical to the first: scored once, answered twice
        remove_clause(policy, clauses[5]),
    ]
    engine: VariantScorer = scorer  # mypy checks CopeScorer against the protocol
    cached = engine.score_variants(variants, contents)
    assert len(cached) == len(variants)
    for variant, scores in zip(variants, cached, strict=True):
        naive = scorer.score_naive(variant, contents)
        diff = max(abs(a - b) for a, b in zip(_p1(scores), _p1(naive), strict=True))
        assert diff <= TOLERANCE
        assert all(s.margin is not None for s in scores)
        for s, n in zip(scores, naive, strict=True):
            assert s.margin is not None and n.margin is not None
            assert abs(s.margin - n.margin) <= 1e-3
    assert _p1(cached[0]) == _p1(cached[5])
    # The variants are really different prompts (the test would be empty otherwise).
    assert len({round(_p1(s)[1], 6) for s in cached}) > 3


def test_each_variant_runs_only_its_tail_after_the_shared_prefix(
    scorer: CopeScorer, policy: str, contents: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clauses = parse_clauses(policy)
    variants = [policy] + [remove_clause(policy, c) for c in clauses]
    ids = [scorer._prefix_ids(v) for v in variants]
    model = scorer.model
    widths: list[int] = []
    real = model.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        widths.append(int(kwargs["input_ids"].shape[0] * kwargs["input_ids"].shape[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    scorer.score_variants(variants, contents[:1])
    prefix_tokens = sum(widths) - sum(
        len(s) for s in scorer._suffix_ids(contents[:1]) for _ in variants
    )
    # One full prefix (the base), then each removal's tail from its clause on.
    expected = len(ids[0]) + sum(len(x) - common_prefix(x, ids[0]) for x in ids[1:])
    assert prefix_tokens == expected
    assert prefix_tokens < 0.6 * sum(len(x) for x in ids)


def test_attribution_variants_are_grouped_under_their_bases(
    scorer: CopeScorer, policy: str
) -> None:
    clauses = parse_clauses(policy)
    twin = replace_clause(policy, clauses[1], "- " + random_text(random.Random(8), 10))
    variants = distinct(build_variants(policy, twin))
    groups = plan_groups([scorer._prefix_ids(v.policy) for v in variants])
    placed = sorted(i for g in groups for i in g.members)
    assert placed == list(range(len(variants)))
    trunks = {variants[g.trunk].key for g in groups if len(g.members) > 2}
    assert trunks <= {"A", "B"} and "A" in trunks


def test_policy_too_long_fails_its_items_and_no_contents_is_empty(
    tiny_cope: TinyCope, policy: str
) -> None:
    short = load_cope(merged_path=str(tiny_cope.merged), device="cpu", context_limit=200)
    tiny = "# T\n\n## Overview\n\nshort.\n"
    [long_scores, short_scores] = short.score_variants([policy, tiny], ["a", "b"])
    assert all("Policy too long" in s.error for s in long_scores)
    assert all(s.error == "" for s in short_scores)
    assert short.score_variants([policy, tiny], []) == [[], []]
    assert short.score_variants([], ["a"]) == []
