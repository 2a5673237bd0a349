"""The variant set of binocular attribution: bases, removals, swaps, and no text scored twice."""

from __future__ import annotations

from worker.clauses import clause_lines, parse_clauses
from worker.variants import BASE, REMOVAL, SWAP, build_variants, distinct, parse_key, resolve

A = """# Threats

## Overview
Finds threats of violence.

## Definition of Terms
- **Person**: an identifiable individual.

## Definition of Labels

### (VT) Violent threat
#### Includes
- **Threat**: saying you will hurt a specific person.
- **Incitement**: urging others to hurt a person.
#### Excludes
- **Fiction**: clearly fictional stories.
"""
# The twin: the same except the first criterion's wording, and one extra exclusion.
B = A.replace(
    "- **Threat**: saying you will hurt a specific person.",
    "- **Threat**: stating an intent to injure or kill someone.",
).replace(
    "- **Fiction**: clearly fictional stories.",
    "- **Fiction**: clearly fictional stories.\n- **News**: reporting on threats made by others.",
)


def test_keys_cover_bases_every_removal_and_every_aligned_swap() -> None:
    variants = build_variants(A, B)
    keys = [v.key for v in variants]
    assert keys[:2] == ["A", "B"]
    clauses_a, clauses_b = parse_clauses(A), parse_clauses(B)
    assert len(clauses_a) == 5 and len(clauses_b) == 6
    for clause in clauses_a:
        assert f"A-:{clause.key}" in keys and f"A<B:{clause.key}" in keys
    for clause in clauses_b:
        assert f"B-:{clause.key}" in keys
    # B's extra exclusion has no counterpart in A: removed, never swapped.
    assert "B-:label/VT/excludes/2" in keys
    assert not any(k.startswith("B<A:label/VT/excludes/2") for k in keys)
    assert len(keys) == len(set(keys))
    assert {v.kind for v in variants} == {BASE, REMOVAL, SWAP}


def test_removal_drops_only_the_clause_and_swap_carries_the_other_wording() -> None:
    by_key = {v.key: v for v in build_variants(A, B)}
    removed = by_key["A-:label/VT/includes/2"].policy
    assert "Incitement" not in removed and "#### Includes" in removed
    assert removed == A.replace("- **Incitement**: urging others to hurt a person.\n", "")

    swapped = by_key["A<B:label/VT/includes/1"]
    assert swapped.policy == A.replace(
        "saying you will hurt a specific person.", "stating an intent to injure or kill someone."
    )
    assert (swapped.side, swapped.clause_key, swapped.other_key) == (
        "A",
        "label/VT/includes/1",
        "label/VT/includes/1",
    )
    back = by_key["B<A:label/VT/includes/1"].policy
    a_threat = clause_lines(A, parse_clauses(A)[2])
    assert a_threat in back and "stating an intent" not in back


def test_a_swap_of_identical_wording_is_marked_as_its_base_and_not_scored() -> None:
    variants = build_variants(A, B)
    by_key = {v.key: v for v in variants}
    # The Overview reads the same in both: A with B's Overview is A.
    assert by_key["A<B:overview"].same_as == "A"
    assert by_key["B<A:overview"].same_as == "B"
    # Removing the same (identical) clause from A and B does not give the same text (B has more).
    assert by_key["B-:overview"].same_as == ""
    # The swap of the differing criterion is real; here it is B without its extra exclusion,
    # which is scored once, under the earlier key.
    assert by_key["A<B:label/VT/includes/1"].policy != A
    assert by_key["A<B:label/VT/includes/1"].same_as == "B-:label/VT/excludes/2"
    scored = distinct(variants)
    texts = [v.policy for v in scored]
    assert len(texts) == len(set(texts))
    assert all(v.same_as == "" for v in scored)
    results = resolve(variants, {v.key: len(v.policy) for v in scored})
    assert set(results) == set(by_key)
    assert results["A<B:overview"] == results["A"]


def test_identical_wordings_score_nothing_twice() -> None:
    variants = build_variants(A, A)
    assert {v.key: v.same_as for v in variants}["B"] == "A"
    assert all(v.key.startswith("A") for v in distinct(variants))
    # Every swap is the base itself.
    assert all(v.same_as in ("A", "B") for v in variants if v.kind == SWAP)


def test_keys_are_stable() -> None:
    first = [(v.key, v.policy, v.same_as) for v in build_variants(A, B)]
    assert first == [(v.key, v.policy, v.same_as) for v in build_variants(A, B)]


def test_a_key_says_its_side_kind_and_clause() -> None:
    import pytest

    for variant in build_variants(A, B):
        assert parse_key(variant.key) == (variant.side, variant.kind, variant.clause_key)
    assert parse_key("B<A:label/VT/includes/1") == ("B", SWAP, "label/VT/includes/1")
    for bad in ("", "C", "A-:", "A<A:overview", "B<B:x", "Ax", "A<B:"):
        with pytest.raises(ValueError):
            parse_key(bad)
