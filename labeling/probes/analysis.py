"""A probe run's conclusions from its labels: pure functions, no database.

Each item comes with its label under every probe variant (``worker.probes`` keys, ``same_as``
already resolved; None where that score failed). An item counts only where the labels a figure
compares were both scored.

* **leakage**: items labeled 1 under the off-topic control ``OFF`` among those it scored;
* **inversion** per label L: expected = items labeled 1 under ``P`` and 0 under ``DROP:L``
  (their 1 came from L's Includes); flipped = those of them labeled 0 under ``INV:L``;
* **clauses**: an item moved when its label under ``P-:<key>`` differs from ``P``; a clause
  that moves none is **dead**, one that moves at least ``max(1, 5%)`` of the items scored is
  **load-bearing**, anything between is minor;
* **rewording**: items whose label under ``TW`` equals ``P``;
* **steerability**: flips observed (inversion flips plus signed-off carve-outs that turned 0)
  over flips expected (inversion expected plus signed-off carve-outs scored), beside the
  rewording's unchanged share.

Every share carries its Wilson interval (``labeling.agreement.wilson_interval``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labeling.agreement import wilson_interval
from worker.probes import BASE_KEY, CONTROL_KEY, clause_removal_key, drop_key, inversion_key

LIST_CAP = 50  # item ids kept per list in the summary
LOAD_BEARING_SHARE = 0.05


@dataclass(frozen=True)
class ProbeItem:
    """One item's labels under the probe variants (key -> label, None: not scored)."""

    item_id: int
    labels: dict[str, int | None]
    tag: str = ""

    def label(self, key: str) -> int | None:
        return self.labels.get(key)


@dataclass(frozen=True)
class ClauseRef:
    key: str
    where: str
    text: str


@dataclass(frozen=True)
class CarveoutState:
    status: str  # labeling.models.CarveoutStatus
    label_after: int | None
    item_id: int = 0


@dataclass
class _Inversion:
    label: str
    expected: list[int] = field(default_factory=list)
    flipped: list[int] = field(default_factory=list)


def share(count: int, n: int) -> dict[str, Any]:
    """``share``, ``low``, ``high`` of ``count / n`` (None for all three when ``n == 0``)."""
    interval = wilson_interval(count, n)
    return {
        "share": count / n if n else None,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
    }


def _ids(ids: Iterable[int]) -> list[int]:
    return sorted(ids)[:LIST_CAP]


def leakage(items: Sequence[ProbeItem]) -> dict[str, Any]:
    scored = [i for i in items if i.label(CONTROL_KEY) is not None]
    leaked = [i.item_id for i in scored if i.label(CONTROL_KEY) == 1]
    return {"count": len(leaked), "n": len(scored), **share(len(leaked), len(scored)),
            "items": _ids(leaked)}  # fmt: skip


def _inversions(items: Sequence[ProbeItem], codes: Sequence[str]) -> list[_Inversion]:
    out = []
    for code in codes:
        found = _Inversion(code)
        for item in items:
            inverted = item.label(inversion_key(code))
            if item.label(BASE_KEY) != 1 or item.label(drop_key(code)) != 0 or inverted is None:
                continue
            found.expected.append(item.item_id)
            if inverted == 0:
                found.flipped.append(item.item_id)
        out.append(found)
    return out


def inversion(found: Sequence[_Inversion]) -> list[dict[str, Any]]:
    return [
        {
            "label": f.label,
            "expected": len(f.expected),
            "flipped": len(f.flipped),
            **share(len(f.flipped), len(f.expected)),
            "not_flipped": _ids(set(f.expected) - set(f.flipped)),
        }
        for f in found
    ]


def clause_effects(
    items: Sequence[ProbeItem], clauses: Sequence[ClauseRef]
) -> list[dict[str, Any]]:
    """Each clause's removal: items moved (to 1, to 0) and its status."""
    out = []
    # Each item's own label once, beside its labels (a clause's pass reads one key of each).
    scored = [(i.item_id, i.labels, b) for i in items if (b := i.labels.get(BASE_KEY)) is not None]
    for clause in clauses:
        key = clause_removal_key(clause.key)
        to_one: list[int] = []
        to_zero: list[int] = []
        n = 0
        for item_id, labels, base in scored:
            removed = labels.get(key)
            if removed is None:
                continue
            n += 1
            if removed != base:
                (to_one if removed == 1 else to_zero).append(item_id)
        moved = len(to_one) + len(to_zero)
        if n == 0:
            status = "minor"  # nothing scored: no claim either way
        elif moved == 0:
            status = "dead"
        elif moved >= max(1, LOAD_BEARING_SHARE * n):
            status = "load_bearing"
        else:
            status = "minor"
        out.append({
            "key": clause.key, "where": clause.where, "text": clause.text, "moved": moved,
            "to_one": len(to_one), "to_zero": len(to_zero), "status": status,
            "items": _ids(to_one + to_zero),
        })  # fmt: skip
    return out


def rewording(items: Sequence[ProbeItem], reworded: dict[int, int | None]) -> dict[str, Any] | None:
    """Labels under the rewording against ``P`` (None when the rewording was never scored)."""
    if not reworded:
        return None
    pairs = [
        (i.item_id, i.label(BASE_KEY), reworded.get(i.item_id))
        for i in items
        if i.label(BASE_KEY) is not None and reworded.get(i.item_id) is not None
    ]
    moved = [pk for pk, base, tw in pairs if base != tw]
    unchanged = len(pairs) - len(moved)
    return {"unchanged": unchanged, "n": len(pairs), **share(unchanged, len(pairs)),
            "moved": _ids(moved)}  # fmt: skip


def carveout_counts(carveouts: Sequence[CarveoutState]) -> dict[str, int]:
    approved = [c for c in carveouts if c.status == "approved"]
    scored = [c for c in approved if c.label_after is not None]
    return {
        "proposed": sum(1 for c in carveouts if c.status == "proposed"),
        "approved": len(approved),
        "rejected": sum(1 for c in carveouts if c.status == "rejected"),
        "scored": len(scored),
        "flipped": sum(1 for c in scored if c.label_after == 0),
    }


def steerability(
    inversions: Sequence[dict[str, Any]], carveouts: dict[str, int], reworded: dict[str, Any] | None
) -> dict[str, Any]:
    observed = sum(i["flipped"] for i in inversions) + carveouts["flipped"]
    expected = sum(i["expected"] for i in inversions) + carveouts["scored"]
    stable = None
    if reworded is not None:
        stable = {k: reworded[k] for k in ("unchanged", "n", "share", "low", "high")}
    return {
        "flips": {"observed": observed, "expected": expected, **share(observed, expected)},
        "stable": stable,
    }


def tag_figures(
    items: Sequence[ProbeItem], found: Sequence[_Inversion], carveouts: Sequence[CarveoutState]
) -> list[dict[str, Any]]:
    """Per item tag (test packs): items scored, labeled 1, leaked, flips expected and seen."""
    expected: dict[int, int] = {}
    flipped: dict[int, int] = {}
    for f in found:
        for pk in f.expected:
            expected[pk] = expected.get(pk, 0) + 1
        for pk in f.flipped:
            flipped[pk] = flipped.get(pk, 0) + 1
    for c in carveouts:
        if c.status == "approved" and c.label_after is not None:
            expected[c.item_id] = expected.get(c.item_id, 0) + 1
            flipped[c.item_id] = flipped.get(c.item_id, 0) + (c.label_after == 0)
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        if not item.tag or item.label(BASE_KEY) is None:
            continue
        row = rows.setdefault(item.tag, {"tag": item.tag, "n": 0, "positive": 0, "leaked": 0,
                                         "expected_flips": 0, "flipped": 0})  # fmt: skip
        row["n"] += 1
        row["positive"] += item.label(BASE_KEY) == 1
        row["leaked"] += item.label(CONTROL_KEY) == 1
        row["expected_flips"] += expected.get(item.item_id, 0)
        row["flipped"] += flipped.get(item.item_id, 0)
    return [rows[t] for t in sorted(rows)]


def summarize(
    items: Sequence[ProbeItem],
    *,
    total: int,
    codes: Sequence[str],
    clauses: Sequence[ClauseRef],
    backend: str,
    weak: bool,
    reworded: dict[int, int | None] | None = None,
    carveouts: Sequence[CarveoutState] = (),
) -> dict[str, Any]:
    """The run's ``summary`` (the shape ``labeling.probes`` documents)."""
    scored = [i for i in items if i.label(BASE_KEY) is not None]
    found = _inversions(scored, codes)
    inversions = inversion(found)
    effects = clause_effects(scored, clauses)
    stable = rewording(scored, reworded or {})
    counts = carveout_counts(carveouts)
    return {
        "items": total,
        "scored": len(scored),
        "failed": total - len(scored),
        "positive": sum(1 for i in scored if i.label(BASE_KEY) == 1),
        "backend": backend,
        "weak": weak,
        "leakage": leakage(scored),
        "inversion": inversions,
        "clauses": effects,
        "dead": [c["key"] for c in effects if c["status"] == "dead"],
        "load_bearing": [c["key"] for c in effects if c["status"] == "load_bearing"],
        "rewording": stable,
        "carveouts": counts,
        "steerability": steerability(inversions, counts, stable),
        "tags": tag_figures(scored, found, carveouts),
    }
