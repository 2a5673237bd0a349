"""Reviewer agreement maths against reference implementations and a published example."""

from __future__ import annotations

import random

import pytest

from labeling.agreement import gwet_ac1 as two_by_two_ac1
from labeling.rater_agreement import (
    cohen_kappa,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha_nominal,
    rater_agreement,
    rater_figures,
)
from tests.labeling.review.references import reference_alpha, reference_cohen, reference_fleiss

# Gwet, Handbook of Inter-Rater Reliability (4th ed.), the four raters' example with missing
# ratings (irrCAC's ``cac.raw4raters``): 12 units, 5 categories. Published: percent agreement
# 0.8182, Gwet's AC1 0.7754.
_R = None
GWET_EXAMPLE = [
    [1, 1, _R, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
    [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [_R, 5, 5, 5], [_R, _R, 1, 1], [_R, _R, 3, _R],
]  # fmt: skip


def _units(rows: list[list[int | None]]) -> list[dict[int, int]]:
    return [{r: v for r, v in enumerate(row) if v is not None} for row in rows]


def _random_units(seed: int, raters: int, n: int, missing: float) -> list[dict[int, str]]:
    rng = random.Random(seed)
    units = []
    for _ in range(n):
        truth = rng.choice("01u")
        unit = {
            r: truth if rng.random() < 0.7 else rng.choice("01u")
            for r in range(raters)
            if rng.random() >= missing
        }
        units.append(unit)
    return units


def test_ac1_and_percent_agreement_match_gwets_published_example() -> None:
    units = _units(GWET_EXAMPLE)

    assert gwet_ac1(units, categories=5) == pytest.approx(0.7754, abs=5e-5)
    assert rater_agreement(units, categories=5).percent == pytest.approx(0.8182, abs=5e-5)


def test_ac1_of_two_raters_and_two_categories_is_the_two_by_two_formula() -> None:
    pairs = [("1", "1")] * 7 + [("1", "0")] * 3 + [("0", "1")] * 2 + [("0", "0")] * 40
    units = [{"a": a, "b": b} for a, b in pairs]

    assert gwet_ac1(units, categories=2) == pytest.approx(two_by_two_ac1(7, 3, 2, 40))


def test_alpha_matches_krippendorff_on_the_published_example() -> None:
    units = _units(GWET_EXAMPLE)

    assert krippendorff_alpha_nominal(units) == pytest.approx(reference_alpha(units))


@pytest.mark.parametrize("seed", range(8))
def test_figures_match_the_references_on_random_decisions(seed: int) -> None:
    two = _random_units(seed, raters=2, n=60, missing=0.0)
    pairs = [(u[0], u[1]) for u in two]
    assert cohen_kappa(pairs) == pytest.approx(reference_cohen(pairs))

    four = _random_units(seed + 100, raters=4, n=80, missing=0.0)
    kappa, used = fleiss_kappa(four)
    assert used == 80 and kappa == pytest.approx(reference_fleiss(four))

    sparse = _random_units(seed + 200, raters=5, n=80, missing=0.3)
    counted = [u for u in sparse if len(u) >= 2]
    assert krippendorff_alpha_nominal(sparse) == pytest.approx(reference_alpha(counted))


def test_fleiss_takes_the_units_with_the_usual_number_of_ratings() -> None:
    full = _random_units(7, raters=3, n=30, missing=0.0)
    extra = [{0: "1", 1: "0"}, {0: "u", 1: "u"}]

    kappa, used = fleiss_kappa(full + extra)

    assert used == 30 and kappa == pytest.approx(reference_fleiss(full))


def test_undefined_figures_are_none_not_numbers() -> None:
    same = [{"a": "1", "b": "1"}] * 5

    figures = rater_agreement(same, categories=3)

    assert figures.percent == 1.0
    assert figures.cohen_kappa is None and figures.fleiss_kappa is None
    assert figures.krippendorff_alpha is None
    assert figures.gwet_ac1 == 1.0  # chance agreement below 1: AC1 stays defined
    empty = rater_agreement([{"a": "1"}], categories=3)
    assert (empty.units, empty.single, empty.percent, empty.gwet_ac1) == (0, 1, None, None)


def test_cohen_is_the_sets_kappa_only_with_exactly_two_raters() -> None:
    two = [{"a": "1", "b": "0"}, {"a": "0", "b": "0"}, {"a": "1", "b": "1"}]
    three = [*two, {"a": "1", "c": "1"}]

    assert rater_agreement(two, 3).cohen_kappa == pytest.approx(
        reference_cohen([("1", "0"), ("0", "0"), ("1", "1")])
    )
    figures = rater_agreement(three, 3)
    assert figures.cohen_kappa is None
    assert [(p.rater_a, p.rater_b, p.units) for p in figures.pairs] == [
        ("a", "b", 3),
        ("a", "c", 1),
    ]


def test_reviewer_figures_count_decisions_speed_and_agreement_with_the_final_result() -> None:
    ratings = [
        (1, "ann", "1", 10.0),
        (2, "ann", "0", 30.0),
        (3, "ann", "1", None),
        (1, "bob", "0", 5.0),
        (2, "bob", "0", 7.0),
    ]
    final = {1: "1", 2: "0"}  # unit 3 not final yet

    ann, bob = rater_figures(ratings, final)

    assert (ann.rater, ann.decisions, ann.median_seconds) == ("ann", 3, 20.0)
    assert (ann.compared, ann.agreed_with_final, ann.agreement_with_final) == (2, 2, 1.0)
    assert (bob.decisions, bob.median_seconds, bob.agreed_with_final, bob.compared) == (
        2,
        6.0,
        1,
        2,
    )
