"""Agreement between reviewers who decided the same mismatches: pure maths, no Django.

A *unit* is one mismatch; its ratings map each reviewer to the category they chose. Units rated
by fewer than two reviewers say nothing about agreement and are left out of every figure (their
number is reported). Each coefficient is ``None`` where it is undefined (no units, or chance
agreement of 1: every rating in one category), never a made-up number.

* Cohen's κ, two raters: ``(p_o − p_e) / (1 − p_e)``, ``p_e = Σ_k p1_k · p2_k`` from each
  rater's own category shares, on the units both rated. Reported for every pair of reviewers
  and, when exactly two reviewers rated, as the set's κ.
* Fleiss' κ: on the units with the usual number of ratings ``m`` (the most common count; Fleiss
  needs the same count on every unit): ``P̄ = mean_i (Σ_k n_ik² − m) / (m(m − 1))``,
  ``P_e = Σ_k p_k²``.
* Krippendorff's α, nominal: ``1 − (n − 1) · Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k`` from the
  coincidence matrix (each unit's ordered pairs of ratings weighted ``1 / (m_u − 1)``); takes
  units with different numbers of ratings.
* Gwet's AC1 (Gwet 2008; Handbook of Inter-Rater Reliability, 4th ed., ch. 2): ``p_a`` the mean
  over units rated at least twice of ``Σ_k r_ik (r_ik − 1) / (r_i (r_i − 1))``;
  ``π_k`` the mean over units of ``r_ik / r_i``; ``p_e = Σ_k π_k (1 − π_k) / (q − 1)`` with ``q``
  the number of categories of the scale (not only those used). Unlike κ it stays near ``p_a``
  when one category is rare.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

Unit = Mapping[Any, Any]  # rater -> category (any hashable values)


@dataclass(frozen=True)
class PairAgreement:
    rater_a: Any
    rater_b: Any
    units: int  # units both rated
    agreed: int
    kappa: float | None


@dataclass(frozen=True)
class RaterAgreement:
    units: int  # units rated at least twice: the figures' sample
    single: int  # units rated once, left out
    ratings: int  # ratings on the counted units
    raters: int
    agreed_units: int  # counted units where every rating is the same
    percent: float | None  # p_a: pairwise observed agreement
    cohen_kappa: float | None  # exactly two raters only
    fleiss_kappa: float | None
    fleiss_units: int  # units with the usual number of ratings
    krippendorff_alpha: float | None
    gwet_ac1: float | None
    pairs: tuple[PairAgreement, ...]


@dataclass(frozen=True)
class RaterFigures:
    rater: Any
    decisions: int
    median_seconds: float | None
    compared: int  # decisions on units that have a final result
    agreed_with_final: int

    @property
    def agreement_with_final(self) -> float | None:
        return self.agreed_with_final / self.compared if self.compared else None


def _ratio(numerator: float, denominator: float) -> float | None:
    if abs(denominator) < 1e-12:
        return None
    return numerator / denominator


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's κ of two raters over ``(rating_1, rating_2)`` pairs; ``None`` when undefined."""
    n = len(pairs)
    if n == 0:
        return None
    p_o = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    p_e = sum(first[k] * second[k] for k in first) / (n * n)
    return _ratio(p_o - p_e, 1 - p_e)


def fleiss_kappa(units: Sequence[Unit]) -> tuple[float | None, int]:
    """Fleiss' κ on the units with the most common number of ratings (at least two); and how
    many units that is."""
    counts = Counter(len(unit) for unit in units if len(unit) >= 2)
    if not counts:
        return None, 0
    m = max(counts, key=lambda size: (counts[size], size))
    same = [unit for unit in units if len(unit) == m]
    n = len(same)
    totals: Counter[Hashable] = Counter()
    p_bar = 0.0
    for unit in same:
        per = Counter(unit.values())
        totals.update(per)
        p_bar += (sum(c * c for c in per.values()) - m) / (m * (m - 1))
    p_bar /= n
    p_e = sum((total / (n * m)) ** 2 for total in totals.values())
    return _ratio(p_bar - p_e, 1 - p_e), n


def krippendorff_alpha_nominal(units: Sequence[Unit]) -> float | None:
    """Krippendorff's α for nominal data, units with missing ratings allowed."""
    coincidence: defaultdict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        per = Counter(unit.values())
        for c, n_c in per.items():
            for k, n_k in per.items():
                pairs = n_c * (n_k - 1) if c == k else n_c * n_k
                coincidence[(c, k)] += pairs / (m - 1)
    marginals: defaultdict[Hashable, float] = defaultdict(float)
    for (c, _k), value in coincidence.items():
        marginals[c] += value
    n = sum(marginals.values())
    if n <= 1:
        return None
    observed = sum(value for (c, k), value in coincidence.items() if c != k)
    expected = sum(marginals[c] * marginals[k] for c in marginals for k in marginals if c != k)
    ratio = _ratio((n - 1) * observed, expected)
    return None if ratio is None else 1 - ratio


def gwet_ac1(units: Sequence[Unit], categories: int) -> float | None:
    """Gwet's AC1 for any number of raters, missing ratings allowed; ``categories`` is ``q``,
    the number of categories of the scale."""
    if categories < 2:
        raise ValueError("AC1 needs a scale of at least two categories")
    rated = [Counter(unit.values()) for unit in units if len(unit) >= 1]
    multi = [(per, sum(per.values())) for per in rated if sum(per.values()) >= 2]
    if not multi:
        return None
    p_a = sum(
        sum(r_k * (r_k - 1) for r_k in per.values()) / (r * (r - 1)) for per, r in multi
    ) / len(multi)
    shares: defaultdict[Hashable, float] = defaultdict(float)
    for per in rated:
        r = sum(per.values())
        for k, r_k in per.items():
            shares[k] += r_k / r
    pis = [share / len(rated) for share in shares.values()]
    p_e = sum(pi * (1 - pi) for pi in pis) / (categories - 1)
    return _ratio(p_a - p_e, 1 - p_e)


def _pairs(units: Sequence[Unit]) -> tuple[PairAgreement, ...]:
    together: dict[tuple[Hashable, Hashable], list[tuple[Hashable, Hashable]]] = {}
    for unit in units:
        for a, b in combinations(sorted(unit, key=str), 2):
            together.setdefault((a, b), []).append((unit[a], unit[b]))
    return tuple(
        PairAgreement(a, b, len(rows), sum(1 for x, y in rows if x == y), cohen_kappa(rows))
        for (a, b), rows in sorted(together.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    )


def rater_agreement(units: Sequence[Unit], categories: int) -> RaterAgreement:
    """Every figure of this module for one set of units (a job's or a policy's mismatches)."""
    counted = [unit for unit in units if len(unit) >= 2]
    raters = {rater for unit in counted for rater in unit}
    pairs = _pairs(counted)
    fleiss, fleiss_units = fleiss_kappa(counted)
    pair_total = sum(len(u) * (len(u) - 1) for u in counted)
    agree_total = sum(
        sum(c * (c - 1) for c in Counter(u.values()).values()) / (len(u) * (len(u) - 1))
        for u in counted
    )
    return RaterAgreement(
        units=len(counted),
        single=sum(1 for unit in units if len(unit) == 1),
        ratings=sum(len(unit) for unit in counted),
        raters=len(raters),
        agreed_units=sum(1 for unit in counted if len(set(unit.values())) == 1),
        percent=agree_total / len(counted) if pair_total else None,
        cohen_kappa=pairs[0].kappa if len(raters) == 2 and len(pairs) == 1 else None,
        fleiss_kappa=fleiss,
        fleiss_units=fleiss_units,
        krippendorff_alpha=krippendorff_alpha_nominal(counted),
        gwet_ac1=gwet_ac1(counted, categories) if counted else None,
        pairs=pairs,
    )


def rater_figures(
    ratings: Sequence[tuple[Any, Any, Any, float | None]],
    final: Mapping[Any, Any],
) -> list[RaterFigures]:
    """Per rater, from ``(unit, rater, category, seconds)`` rows and each unit's final category
    (units not final yet are absent): decisions, median seconds per decision, and how often the
    rater's category is the final one."""
    by_rater: dict[Hashable, list[tuple[Hashable, Hashable, float | None]]] = {}
    for unit, rater, category, seconds in ratings:
        by_rater.setdefault(rater, []).append((unit, category, seconds))
    figures = []
    for rater, rows in by_rater.items():
        times = [seconds for _u, _c, seconds in rows if seconds is not None]
        compared = [(u, c) for u, c, _s in rows if u in final]
        figures.append(
            RaterFigures(
                rater=rater,
                decisions=len(rows),
                median_seconds=statistics.median(times) if times else None,
                compared=len(compared),
                agreed_with_final=sum(1 for u, c in compared if final[u] == c),
            )
        )
    return sorted(figures, key=lambda f: (-f.decisions, str(f.rater)))
