"""The swap and removal tests on constructed scores (no database)."""

from __future__ import annotations

from labeling.explain.analysis import TIE_TOLERANCE, Score, explain_item, variant_tests
from labeling.models import ExplainVerdict, FindingRole
from worker.variants import BASE, REMOVAL, SWAP, Variant

CLAUSES = ["overview", "label/X/includes/1", "label/X/includes/2", "label/X/excludes/1"]


def variants(*, same_as: dict[str, str] | None = None) -> list[Variant]:
    same = same_as or {}
    out = [Variant("A", "a", "A", BASE, ""), Variant("B", "b", "B", BASE, "")]
    for side in ("A", "B"):
        out += [Variant(f"{side}-:{c}", f"{side}-{c}", side, REMOVAL, c) for c in CLAUSES]
    for side, other in (("A", "B"), ("B", "A")):
        out += [
            Variant(
                f"{side}<{other}:{c}",
                f"{side}<{c}",
                side,
                SWAP,
                c,
                c,
                same.get(f"{side}<{other}:{c}", ""),
            )
            for c in CLAUSES
        ]
    return out


def scores(
    base_a: tuple[int, float], base_b: tuple[int, float], **changed: tuple[int, float]
) -> dict[str, Score]:
    """Every variant scores like its side's base, except ``changed`` (key with / for -, <, :)."""
    out = {}
    for v in variants():
        label, margin = base_a if v.side == "A" else base_b
        out[v.key] = Score(label, None, margin)
    for name, (label, margin) in changed.items():
        out[name] = Score(label, None, margin)
    return out


def conclude(s: dict[str, Score], gold: int | None = None, **kw: dict[str, str]):
    return explain_item(variants(**kw), s, gold)


def test_single_clause_decides_the_mismatch() -> None:
    s = scores((1, 2.0), (0, -1.0))
    s["A<B:label/X/includes/1"] = Score(0, None, -1.5)
    s["A<B:overview"] = Score(1, None, 1.8)  # moves the margin, not the label
    c = conclude(s)
    assert c.verdict == ExplainVerdict.DECIDED
    assert (c.clause_a, c.clause_b) == ("label/X/includes/1", "label/X/includes/1")
    assert c.effect == 3.5
    decides = [f for f in c.findings if f.role == FindingRole.DECIDES]
    assert [(f.side, f.clause, f.rank) for f in decides] == [("A", "label/X/includes/1", 0)]


def test_clear_winner_among_several_flipping_swaps_decides() -> None:
    s = scores((1, 2.0), (0, -1.0))
    s["A<B:label/X/includes/1"] = Score(0, None, -0.5)  # effect 2.5
    s["A<B:label/X/includes/2"] = Score(0, None, -3.0)  # effect 5: later, larger
    c = conclude(s)
    assert c.verdict == ExplainVerdict.DECIDED and c.clause_a == "label/X/includes/2"


def test_equal_effects_are_a_tie_naming_every_tied_clause() -> None:
    s = scores((1, 2.0), (0, -1.0))
    s["A<B:label/X/includes/1"] = Score(0, None, -1.0)
    s["A<B:label/X/includes/2"] = Score(0, None, -1.0 + TIE_TOLERANCE / 2)
    s["A<B:label/X/excludes/1"] = Score(0, None, -0.2)  # flips too, but clearly smaller
    c = conclude(s)
    assert c.verdict == ExplainVerdict.TIE
    tied = [f.clause for f in c.findings if f.role == FindingRole.TIED]
    assert tied == ["label/X/includes/1", "label/X/includes/2"]
    assert c.clause_a == "label/X/includes/1"


def test_no_swap_alone_moves_the_label_says_so() -> None:
    s = scores((1, 2.0), (0, -1.0))
    s["A<B:label/X/includes/1"] = Score(1, None, 0.1)  # closer, still A's label
    c = conclude(s)
    assert c.verdict == ExplainVerdict.NONE and c.clause_a == "" and c.effect is None
    assert not [f for f in c.findings if f.role in (FindingRole.DECIDES, FindingRole.TIED)]


def test_removal_names_the_clauses_each_label_needs_ranked_by_effect() -> None:
    s = scores((1, 2.0), (1, 1.0))
    s["A-:label/X/includes/1"] = Score(0, None, -0.5)  # effect 2.5
    s["A-:label/X/includes/2"] = Score(0, None, -4.0)  # effect 6
    s["A-:overview"] = Score(1, None, 0.5)  # moves, does not flip
    s["B-:label/X/excludes/1"] = Score(0, None, -0.1)
    c = conclude(s)
    assert c.verdict == ExplainVerdict.AGREE
    necessary = [(f.side, f.clause, f.rank) for f in c.findings if f.role == FindingRole.NECESSARY]
    assert necessary == [
        ("A", "label/X/includes/2", 0),
        ("A", "label/X/includes/1", 1),
        ("B", "label/X/excludes/1", 0),
    ]


def test_gold_miss_is_the_removal_that_turns_a_wrong_label_into_gold() -> None:
    s = scores((1, 2.0), (0, -1.0))
    s["A-:label/X/includes/1"] = Score(0, None, -0.5)  # A is wrong (gold 0): this fixes it
    s["B-:label/X/excludes/1"] = Score(1, None, 0.5)  # B is right: removing this breaks it
    c = conclude(s, gold=0)
    misses = [(f.side, f.clause) for f in c.findings if f.role == FindingRole.GOLD_MISS]
    assert misses == [("A", "label/X/includes/1")]
    necessary = {(f.side, f.clause) for f in c.findings if f.role == FindingRole.NECESSARY}
    assert necessary == {("A", "label/X/includes/1"), ("B", "label/X/excludes/1")}
    assert not [f for f in conclude(s).findings if f.role == FindingRole.GOLD_MISS]


def test_a_swap_marked_same_as_b_reads_bs_score() -> None:
    kw = {"same_as": {"A<B:label/X/includes/1": "B"}}
    s = scores((1, 2.0), (0, -1.0))
    del s["A<B:label/X/includes/1"]  # not scored: its text is B's
    c = explain_item(variants(**kw), s)
    assert c.verdict == ExplainVerdict.DECIDED and c.clause_a == "label/X/includes/1"
    rows = {t.key: t for t in variant_tests(variants(**kw), s)}
    assert rows["A<B:label/X/includes/1"].flipped and rows["A<B:label/X/includes/1"].delta == -3.0
    assert rows["A<B:overview"].delta == 0.0 and not rows["A<B:overview"].flipped


def test_a_failed_base_fails_the_item_with_the_workers_reason() -> None:
    s = scores((1, 2.0), (0, -1.0))
    s["B"] = Score(None, None, None, "CUDA out of memory")
    c = conclude(s)
    assert c.verdict == ExplainVerdict.FAILED and c.error == "CUDA out of memory"


def test_failed_variants_are_counted_not_hidden() -> None:
    s = scores((1, 2.0), (0, -1.0))
    s["A<B:label/X/includes/1"] = Score(0, None, -1.0)
    s["A-:overview"] = Score(None, None, None, "too long")
    c = conclude(s)
    assert c.verdict == ExplainVerdict.DECIDED
    assert c.error == f"1 of {len(variants())} variants could not be scored."
