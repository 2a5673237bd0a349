"""Agreement between the two wordings of a policy: pure maths, no Django.

For the ``n`` items labeled on both sides (A = primary text, B = twin):

* percent agreement ``p_o = agree / n``;
* Cohen's kappa ``κ = (p_o − p_e) / (1 − p_e)`` with ``p_e = pA1·pB1 + pA0·pB0``. When
  ``p_e == 1`` both sides gave one and the same label to every item: kappa is undefined (0/0),
  reported as ``None`` with ``kappa_note`` saying why, never as a made-up number;
* Gwet's AC1 ``(p_o − p_e') / (1 − p_e')`` with ``p_e' = 2π(1 − π)``, ``π`` the mean of the
  two positive rates: agreement beyond chance that, unlike kappa, stays near ``p_o`` when
  positives are rare (``p_e' ≤ 0.5``, so it is defined whenever one item is labeled);
* a 95% Wilson score interval for ``p_o``;
* the positive rate of each side (with rare positives ``p_o`` is high for free);
* the 2×2 confusion of A against B;
* items a side could not label are excluded and counted by reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval for a proportion ``successes / n``; ``None`` when ``n == 0``."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} is outside 0..{n}")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(a1b1: int, a1b0: int, a0b1: int, a0b0: int) -> tuple[float | None, float | None]:
    """``(kappa, p_e)`` for a 2×2 table of A against B; kappa ``None`` when undefined."""
    n = a1b1 + a1b0 + a0b1 + a0b0
    if n == 0:
        return None, None
    p_o = (a1b1 + a0b0) / n
    pa1 = (a1b1 + a1b0) / n
    pb1 = (a1b1 + a0b1) / n
    p_e = pa1 * pb1 + (1 - pa1) * (1 - pb1)
    if math.isclose(p_e, 1.0, rel_tol=0.0, abs_tol=1e-12):
        return None, p_e
    return (p_o - p_e) / (1 - p_e), p_e


def gwet_ac1(a1b1: int, a1b0: int, a0b1: int, a0b0: int) -> float | None:
    """Gwet's AC1 for two raters and two categories (Gwet 2008); ``None`` when ``n == 0``."""
    n = a1b1 + a1b0 + a0b1 + a0b0
    if n == 0:
        return None
    p_o = (a1b1 + a0b0) / n
    pi = ((a1b1 + a1b0) / n + (a1b1 + a0b1) / n) / 2
    p_e = 2 * pi * (1 - pi)
    return (p_o - p_e) / (1 - p_e)


@dataclass(frozen=True)
class Confusion:
    """Counts of (label under A, label under B)."""

    a1b1: int = 0
    a1b0: int = 0
    a0b1: int = 0
    a0b0: int = 0

    @property
    def n(self) -> int:
        return self.a1b1 + self.a1b0 + self.a0b1 + self.a0b0


@dataclass(frozen=True)
class Agreement:
    n: int  # items labeled on both sides
    agree: int
    disagree: int
    p_o: float | None
    p_e: float | None
    kappa: float | None
    kappa_note: str
    ci_low: float | None
    ci_high: float | None
    positive_rate_a: float | None
    positive_rate_b: float | None
    confusion: Confusion
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> items
    total: int = 0  # items seen, labeled or not
    ac1: float | None = None  # Gwet's AC1

    @property
    def excluded_count(self) -> int:
        return sum(self.excluded.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["excluded_count"] = self.excluded_count
        return data


# Why an item is left out of the agreement, in the words the job page uses.
EXCLUDED_A = "error under A only"
EXCLUDED_B = "error under B only"
EXCLUDED_BOTH = "error under both A and B"


def agreement_from_confusion(
    confusion: Confusion, excluded: dict[str, int] | None = None
) -> Agreement:
    excluded = {k: v for k, v in (excluded or {}).items() if v}
    n = confusion.n
    agree = confusion.a1b1 + confusion.a0b0
    kappa, p_e = cohen_kappa(confusion.a1b1, confusion.a1b0, confusion.a0b1, confusion.a0b0)
    note = ""
    if n and kappa is None:
        note = "undefined: both wordings gave the same label to every item (p_e = 1)"
    elif not n:
        note = "undefined: no item was labeled under both wordings"
    interval = wilson_interval(agree, n)
    return Agreement(
        n=n,
        agree=agree,
        disagree=n - agree,
        p_o=agree / n if n else None,
        p_e=p_e,
        kappa=kappa,
        kappa_note=note,
        ci_low=interval[0] if interval else None,
        ci_high=interval[1] if interval else None,
        positive_rate_a=(confusion.a1b1 + confusion.a1b0) / n if n else None,
        positive_rate_b=(confusion.a1b1 + confusion.a0b1) / n if n else None,
        confusion=confusion,
        excluded=excluded,
        total=n + sum(excluded.values()),
        ac1=gwet_ac1(confusion.a1b1, confusion.a1b0, confusion.a0b1, confusion.a0b0),
    )


def ac1_of(stats: dict[str, Any]) -> float | None:
    """A stored agreement's AC1; figures stored before AC1 was kept get it from their
    confusion table."""
    if "ac1" in stats:
        value = stats["ac1"]
        return None if value is None else float(value)
    c = stats.get("confusion")
    if not isinstance(c, dict):
        return None
    return gwet_ac1(*(int(c.get(k) or 0) for k in ("a1b1", "a1b0", "a0b1", "a0b0")))


def compute_agreement(pairs: Iterable[tuple[int | None, int | None]]) -> Agreement:
    """Agreement over ``(label_a, label_b)`` pairs, one per item; ``None``: that side failed."""
    a1b1 = a1b0 = a0b1 = a0b0 = 0
    only_a = only_b = both = 0
    for label_a, label_b in pairs:
        if label_a is None and label_b is None:
            both += 1
        elif label_a is None:
            only_a += 1
        elif label_b is None:
            only_b += 1
        elif label_a:
            if label_b:
                a1b1 += 1
            else:
                a1b0 += 1
        elif label_b:
            a0b1 += 1
        else:
            a0b0 += 1
    return agreement_from_confusion(
        Confusion(a1b1, a1b0, a0b1, a0b0),
        {EXCLUDED_A: only_a, EXCLUDED_B: only_b, EXCLUDED_BOTH: both},
    )
