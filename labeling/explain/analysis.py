"""One item's attribution from its scores under every variant: pure functions, no database.

For an item labeled ``a`` under wording A and ``b`` under wording B:

* **swap test** (a mismatch, a != b): A's swap variants ``A<B:<key>`` (A with that clause in
  B's wording) whose label is ``b`` decide it, ranked by |margin(variant) - margin(A)| (the
  answer's logit). Exactly one, or one ahead of the next by more than ``TIE_TOLERANCE``: that
  clause decides. Several within the tolerance of the top: a tie (all of them are reported).
  None: no single clause decides (the label moves only when several change), said as such.
* **removal test** (every item, each side): ``A-:<key>`` variants whose label differs from A's
  label: the clause is necessary for A's label; the same for B.
* **gold miss** (an item with a 0/1 gold): on a side whose label is not the gold, the removals
  whose label is the gold: that clause causes the miss.

A variant that ``worker.variants`` marked ``same_as`` an earlier one reads that one's score
(``worker.variants.resolve``): its effect is zero by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labeling.models import ExplainVerdict, FindingRole
from worker.variants import REMOVAL, SWAP, Variant, resolve

# Two swaps whose effects differ by at most this much (in logit units) tie.
TIE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Score:
    """One item under one variant, as the worker answered: label and margin, or an error."""

    label: int | None
    p1: float | None
    margin: float | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.label is not None and self.margin is not None


@dataclass(frozen=True)
class Finding:
    side: str
    role: str  # FindingRole
    clause: str  # the clause key in ``side``'s text
    other: str  # a swap's counterpart in the other text, else ""
    effect: float  # |Δ margin|
    rank: int  # 0 = largest effect within (item, role)


@dataclass(frozen=True)
class Conclusion:
    verdict: str  # ExplainVerdict
    clause_a: str = ""
    clause_b: str = ""
    effect: float | None = None
    findings: tuple[Finding, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Test:
    """One variant's result against its side's base: the stored ``ExplainScore`` figures."""

    key: str
    score: Score
    delta: float | None  # margin - base margin
    flipped: bool  # label differs from the base's


def variant_tests(variants: Sequence[Variant], scores: Mapping[str, Score]) -> list[Test]:
    """Every variant's score (resolved) against its side's base, in variant order."""
    resolved = resolve(variants, scores)
    out = []
    for v in variants:
        score = resolved.get(v.key)
        if score is None:
            continue
        base = resolved.get(v.side)
        comparable = base is not None and base.ok and score.ok
        delta = score.margin - base.margin if comparable else None  # type: ignore[operator,union-attr]
        flipped = comparable and score.label != base.label  # type: ignore[union-attr]
        out.append(Test(v.key, score, delta, bool(flipped)))
    return out


def explain_item(
    variants: Sequence[Variant], scores: Mapping[str, Score], gold: int | None = None
) -> Conclusion:
    """The item's conclusion from its scores (keys as in ``variants``)."""
    resolved = resolve(variants, scores)
    base_a, base_b = resolved.get("A"), resolved.get("B")
    if base_a is None or base_b is None or not base_a.ok or not base_b.ok:
        reason = next((s.error for s in (base_a, base_b) if s is not None and s.error), "")
        return Conclusion(
            ExplainVerdict.FAILED, error=reason or "The base wordings were not scored."
        )
    bases = {"A": base_a, "B": base_b}
    findings = _removals(variants, resolved, bases, gold)
    failed = sum(1 for v in variants if not resolved.get(v.key, Score(None, None, None)).ok)
    error = f"{failed} of {len(variants)} variants could not be scored." if failed else ""
    if base_a.label == base_b.label:
        return Conclusion(ExplainVerdict.AGREE, findings=tuple(findings), error=error)
    verdict, ranked = swap_test(variants, resolved, base_a, int(base_b.label))  # type: ignore[arg-type]
    findings += ranked
    top = ranked[0] if ranked else None
    return Conclusion(
        verdict,
        clause_a=top.clause if top else "",
        clause_b=top.other if top else "",
        effect=top.effect if top else None,
        findings=tuple(findings),
        error=error,
    )


def swap_test(
    variants: Sequence[Variant], scores: Mapping[str, Score], base_a: Score, label_b: int
) -> tuple[str, list[Finding]]:
    """(verdict, the deciding or tied swaps as findings, largest effect first)."""
    assert base_a.margin is not None
    hits = []
    for v in variants:
        score = scores.get(v.key)
        if v.side != "A" or v.kind != SWAP or score is None or not score.ok:
            continue
        if score.label == label_b:
            assert score.margin is not None
            hits.append((abs(score.margin - base_a.margin), v.clause_key, v.other_key))
    if not hits:
        return ExplainVerdict.NONE, []
    hits.sort(key=lambda h: -h[0])
    tied = [h for h in hits if hits[0][0] - h[0] <= TIE_TOLERANCE]
    if len(tied) == 1:
        effect, clause, other = tied[0]
        return ExplainVerdict.DECIDED, [Finding("A", FindingRole.DECIDES, clause, other, effect, 0)]
    return ExplainVerdict.TIE, [
        Finding("A", FindingRole.TIED, clause, other, effect, rank)
        for rank, (effect, clause, other) in enumerate(tied)
    ]


def _removals(
    variants: Sequence[Variant],
    scores: Mapping[str, Score],
    bases: Mapping[str, Score],
    gold: int | None,
) -> list[Finding]:
    """Necessary clauses per side, then gold misses, each ranked by effect."""
    necessary: dict[str, list[tuple[float, str]]] = {"A": [], "B": []}
    misses: dict[str, list[tuple[float, str]]] = {"A": [], "B": []}
    for v in variants:
        score = scores.get(v.key)
        base = bases[v.side]
        if v.kind != REMOVAL or score is None or not score.ok or score.label == base.label:
            continue
        effect = abs(score.margin - base.margin)  # type: ignore[operator]
        necessary[v.side].append((effect, v.clause_key))
        if gold is not None and base.label != gold and score.label == gold:
            misses[v.side].append((effect, v.clause_key))
    out: list[Finding] = []
    for role, found in ((FindingRole.NECESSARY, necessary), (FindingRole.GOLD_MISS, misses)):
        for side in ("A", "B"):
            ranked = sorted(found[side], key=lambda f: -f[0])
            out += [Finding(side, role, key, "", e, r) for r, (e, key) in enumerate(ranked)]
    return out
