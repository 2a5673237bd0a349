"""Reviewer agreement by reference implementations (statsmodels, krippendorff), for the tests
to compare ``labeling.rater_agreement`` with on the same decisions."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import krippendorff
import numpy as np
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa


def _codes(units: Sequence[Mapping[Any, Hashable]]) -> dict[Hashable, int]:
    categories = sorted({c for unit in units for c in unit.values()}, key=str)
    return {c: i for i, c in enumerate(categories)}


def reference_cohen(pairs: Sequence[tuple[Hashable, Hashable]]) -> float:
    codes = _codes([{0: a, 1: b} for a, b in pairs])
    table = np.zeros((len(codes), len(codes)))
    for a, b in pairs:
        table[codes[a], codes[b]] += 1
    return float(cohens_kappa(table, return_results=False))


def reference_fleiss(units: Sequence[Mapping[Any, Hashable]]) -> float:
    """Fleiss' κ of units that all have the same number of ratings."""
    codes = _codes(units)
    rows = [[codes[c] for c in unit.values()] for unit in units]
    table, _categories = aggregate_raters(np.array(rows))
    return float(fleiss_kappa(table, method="fleiss"))


def reference_alpha(units: Sequence[Mapping[Any, Hashable]]) -> float:
    codes = _codes(units)
    raters = sorted({r for unit in units for r in unit}, key=str)
    data = [[float(codes[unit[r]]) if r in unit else np.nan for unit in units] for r in raters]
    return float(
        krippendorff.alpha(reliability_data=np.array(data), level_of_measurement="nominal")
    )
