"""labeling.agreement against hand-computed values (no database)."""

from __future__ import annotations

import pytest

from labeling.agreement import (
    EXCLUDED_A,
    EXCLUDED_B,
    EXCLUDED_BOTH,
    Confusion,
    agreement_from_confusion,
    cohen_kappa,
    compute_agreement,
    wilson_interval,
)


def test_kappa_and_percent_agreement_match_hand_computation() -> None:
    # 20 both 1, 5 only A, 10 only B, 65 both 0: p_o = .85, pA1 = .25, pB1 = .30,
    # p_e = .25*.30 + .75*.70 = .60, kappa = (.85 - .60) / .40 = .625
    result = agreement_from_confusion(Confusion(a1b1=20, a1b0=5, a0b1=10, a0b0=65))
    assert result.n == 100 and result.agree == 85 and result.disagree == 15
    assert result.p_o == pytest.approx(0.85)
    assert result.p_e == pytest.approx(0.60)
    assert result.kappa == pytest.approx(0.625)
    assert result.positive_rate_a == pytest.approx(0.25)
    assert result.positive_rate_b == pytest.approx(0.30)


def test_wilson_interval_matches_published_values() -> None:
    low, high = wilson_interval(85, 100)
    assert low == pytest.approx(0.7672, abs=1e-4)
    assert high == pytest.approx(0.9069, abs=1e-4)
    # The interval stays inside [0, 1] at the edges, where the normal approximation does not.
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_kappa_is_undefined_when_chance_agreement_is_one() -> None:
    kappa, p_e = cohen_kappa(0, 0, 0, 40)
    assert kappa is None and p_e == pytest.approx(1.0)
    result = agreement_from_confusion(Confusion(a0b0=40))
    assert result.p_o == 1.0 and result.kappa is None
    assert "p_e = 1" in result.kappa_note


def test_kappa_negative_when_wordings_systematically_disagree() -> None:
    kappa, _ = cohen_kappa(0, 5, 5, 0)
    assert kappa == pytest.approx(-1.0)


def test_items_with_an_error_are_excluded_and_counted_by_reason() -> None:
    pairs = [(1, 1), (0, 0), (1, 0), (None, 1), (0, None), (None, None), (None, None)]
    result = compute_agreement(pairs)
    assert result.n == 3 and result.agree == 2
    assert result.excluded == {EXCLUDED_A: 1, EXCLUDED_B: 1, EXCLUDED_BOTH: 2}
    assert result.excluded_count == 4 and result.total == 7
    assert result.confusion == Confusion(a1b1=1, a1b0=1, a0b1=0, a0b0=1)


def test_no_items_gives_no_numbers() -> None:
    result = compute_agreement([])
    assert result.n == 0 and result.p_o is None and result.kappa is None
    assert result.ci_low is None and result.positive_rate_a is None
    data = result.to_dict()
    assert data["excluded_count"] == 0 and data["confusion"]["a1b1"] == 0


def test_agreement_module_does_not_import_django() -> None:
    import re
    from pathlib import Path

    import labeling.agreement as module

    source = Path(module.__file__).read_text()
    assert not re.search(r"^\s*(from|import)\s+django", source, flags=re.M)
