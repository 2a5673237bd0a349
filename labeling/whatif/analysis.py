"""The before -> after table of a what-if edit, from scores and gold: pure maths, no Django.

"Before" is the version as its deciding job ran it (A against B, rescored in the same run so
before and after come from the same model); "after" is the edited wording (A* against B*, or
against B when the twin is kept). Gold figures read side A's labels (the version's text) before
and A*'s after. Agreement is ``labeling.agreement.compute_agreement``'s, gold P/R/F1
``labeling.scoring.score_from_counts``'s: one definition of each figure.

"Per label" recall is per class of the binary answer: ``recall`` is the recall of 1 (TPR),
``recall_0`` the recall of 0 (TNR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labeling.agreement import compute_agreement
from labeling.scoring import GoldScore, score_from_counts

BEFORE_A, BEFORE_B, AFTER_A, AFTER_B = "A", "B", "A*", "B*"
# Items listed per kind of change (fixed, broken, other); the counts are always complete.
MAX_LISTED = 200

Labels = Mapping[str, int | None]  # variant key -> label (None: that score failed)


@dataclass(frozen=True)
class WhatIfInput:
    """Everything the table is drawn from, already read from the database."""

    items: Sequence[int]  # the run's items, in order
    affected: Sequence[int]  # the clause's mismatches (a subset of ``items``)
    scores: Mapping[int, Labels]  # item -> its labels under A, B, A* (and B* when edited)
    job_labels: Mapping[int, tuple[int | None, int | None]]  # item -> the job's stored (A, B)
    gold: Mapping[int, str]  # item -> "0", "1", or anything else (no usable gold)
    twin_edited: bool  # B* was scored; else the twin is unchanged and "after" pairs A* with B


def _after_b(labels: Labels, twin_edited: bool) -> int | None:
    return labels.get(AFTER_B if twin_edited else BEFORE_B)


def _complete(labels: Labels | None, twin_edited: bool) -> bool:
    keys = (BEFORE_A, BEFORE_B, AFTER_A) + ((AFTER_B,) if twin_edited else ())
    return labels is not None and all(labels.get(k) is not None for k in keys)


def _agreement(pairs: list[tuple[int | None, int | None]], *, rates: bool) -> dict[str, Any]:
    found = compute_agreement(pairs)
    out: dict[str, Any] = {"agreement": found.p_o, "kappa": found.kappa}
    if rates:
        out.update(a1=found.positive_rate_a, b1=found.positive_rate_b)
    return out


def _pairs_table(data: WhatIfInput, ids: list[int], *, rates: bool) -> dict[str, Any]:
    before = [(data.scores[i][BEFORE_A], data.scores[i][BEFORE_B]) for i in ids]
    after = [(data.scores[i][AFTER_A], _after_b(data.scores[i], data.twin_edited)) for i in ids]
    return {
        "n": len(ids),
        "before": _agreement(before, rates=rates),
        "after": _agreement(after, rates=rates),
    }


def recall_0(score: GoldScore) -> float | None:
    """Recall of the class 0 (TNR): ``tn / (tn + fp)``, undefined when gold has no 0."""
    gold_zero = score.tn + score.fp
    return score.tn / gold_zero if gold_zero else None


def gold_figures(score: GoldScore) -> dict[str, Any]:
    return {
        "accuracy": score.accuracy,
        "precision": score.precision,
        "recall": score.recall,
        "f1": score.f1,
        "recall_0": recall_0(score),
        "tp": score.tp,
        "fp": score.fp,
        "fn": score.fn,
        "tn": score.tn,
    }


def _gold_score(data: WhatIfInput, ids: list[int], key: str) -> GoldScore:
    counts: dict[tuple[str | None, int | None], int] = {}
    for i in ids:
        cell = (data.gold[i], data.scores[i][key])
        counts[cell] = counts.get(cell, 0) + 1
    return score_from_counts(counts)


def _drop(before: float | None, after: float | None) -> float:
    """before - after (positive: worse); 0.0 where either side is undefined (no gold of that
    class, or nothing to score F1 on), since no change can be measured there."""
    return 0.0 if before is None or after is None else before - after


def _changes(data: WhatIfInput, ids: list[int]) -> dict[str, Any]:
    lists: dict[str, list[dict[str, Any]]] = {"fixed": [], "broken": [], "other": []}
    counts = dict.fromkeys(lists, 0)
    for i in ids:
        before, after = data.scores[i][BEFORE_A], data.scores[i][AFTER_A]
        if before == after:
            continue
        gold = data.gold.get(i, "")
        if gold not in ("0", "1"):
            kind = "other"
        else:
            kind = "fixed" if str(after) == gold else "broken"
        counts[kind] += 1
        if len(lists[kind]) < MAX_LISTED:
            lists[kind].append({"item": i, "before": before, "after": after, "gold": gold})
    return {**lists, **{f"{k}_count": n for k, n in counts.items()}}


def whatif_table(data: WhatIfInput) -> dict[str, Any]:
    """The table (the run's ``summary`` less the run's own fields: backend, weak). Figures are
    over the items every needed variant scored; ``failed`` counts the rest."""
    scored = [i for i in data.items if _complete(data.scores.get(i), data.twin_edited)]
    done = set(scored)
    affected = [i for i in data.affected if i in done]
    with_gold = [i for i in scored if data.gold.get(i) in ("0", "1")]
    same = all(
        (data.scores[i][BEFORE_A], data.scores[i][BEFORE_B]) == data.job_labels.get(i)
        for i in scored
    )
    whole = _pairs_table(data, scored, rates=True)
    before, after = _gold_score(data, with_gold, BEFORE_A), _gold_score(data, with_gold, AFTER_A)
    return {
        "items": len(data.items),
        "scored": len(scored),
        "failed": len(data.items) - len(scored),
        "same_as_job": same,
        "affected": _pairs_table(data, affected, rates=False),
        "whole": whole,
        "gold": {
            "n": len(with_gold),
            "before": gold_figures(before),
            "after": gold_figures(after),
        },
        "changed": _changes(data, scored),
        "drops": {
            "f1": _drop(before.f1, after.f1),
            "recall_1": _drop(before.recall, after.recall),
            "recall_0": _drop(recall_0(before), recall_0(after)),
        },
        "predicted": {"agreement": whole["after"]["agreement"], "n": whole["n"]},
    }
