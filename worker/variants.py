"""The policy variants that attribute a twin job's labels to clauses (binocular attribution).

For one job's two wordings A and B, ``build_variants`` returns every policy to score:

* ``A`` and ``B``: the bases;
* removal ``A-:<clause key>`` / ``B-:<clause key>``: the base without that clause (its heading
  kept): does the label depend on it?
* swap ``A<B:<A's clause key>``: A with that clause replaced by B's aligned wording (B's lines,
  list marker included), and ``B<A:<B's clause key>``: B with A's wording. The clause whose swap
  turns A's label into B's is the wording that decides the mismatch. Unaligned clauses get no
  swap.

A variant whose text is the same as an earlier one (a swap of identically worded clauses is A
itself; B equal to A; two identical criteria removed) carries ``same_as``, the key of that earlier
variant: score only the variants with ``same_as == ""`` (``distinct``) and read a marked one's
result from its ``same_as`` (``resolve``). Its effect is then exactly zero by construction.

Pure Python (no Django, no torch): the web side builds the same variants to send and to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from worker.clauses import align_clauses, clause_lines, parse_clauses, remove_clause, replace_clause

BASE, REMOVAL, SWAP = "base", "removal", "swap"
T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    """One policy to score. ``key`` is stable: the same texts give the same keys."""

    key: str  # "A", "B", "A-:<clause key>", "B-:<clause key>", "A<B:<key>", "B<A:<key>"
    policy: str  # the full policy text
    side: str  # "A" or "B": the wording it starts from
    kind: str  # BASE, REMOVAL or SWAP
    clause_key: str  # the clause of ``side`` removed or replaced; "" for a base
    other_key: str = ""  # a swap's counterpart clause in the other wording
    same_as: str = ""  # the key of an earlier variant with exactly this text, else ""


def removal_key(side: str, clause_key: str) -> str:
    return f"{side}-:{clause_key}"


def swap_key(side: str, clause_key: str) -> str:
    other = "B" if side == "A" else "A"
    return f"{side}<{other}:{clause_key}"


def parse_key(key: str) -> tuple[str, str, str]:
    """``(side, kind, clause key)`` of a variant key: ``"A-:term/2"`` is ``("A", REMOVAL,
    "term/2")``, ``"B<A:overview"`` is ``("B", SWAP, "overview")``, ``"A"`` is ``("A", BASE,
    "")``. Raises ``ValueError`` for anything else."""
    if key in ("A", "B"):
        return key, BASE, ""
    side, rest = key[:1], key[1:]
    if side in ("A", "B") and rest.startswith("-:") and len(rest) > 2:
        return side, REMOVAL, rest[2:]
    other = "B" if side == "A" else "A"
    if side in ("A", "B") and rest.startswith(f"<{other}:") and len(rest) > 3:
        return side, SWAP, rest[3:]
    raise ValueError(f"not a variant key: {key!r}")


def build_variants(text_a: str, text_b: str) -> list[Variant]:
    """Bases, then A's removals, B's removals, A's swaps, B's swaps (each in clause order)."""
    clauses_a, clauses_b = parse_clauses(text_a), parse_clauses(text_b)
    out = [Variant("A", text_a, "A", BASE, ""), Variant("B", text_b, "B", BASE, "")]
    for side, text, clauses in (("A", text_a, clauses_a), ("B", text_b, clauses_b)):
        out += [
            Variant(removal_key(side, c.key), remove_clause(text, c), side, REMOVAL, c.key)
            for c in clauses
        ]
    pairs = [p for p in align_clauses(clauses_a, clauses_b) if p.a is not None and p.b is not None]
    for pair in pairs:
        assert pair.a is not None and pair.b is not None
        policy = replace_clause(text_a, pair.a, clause_lines(text_b, pair.b))
        out.append(Variant(swap_key("A", pair.a.key), policy, "A", SWAP, pair.a.key, pair.b.key))
    for pair in sorted(pairs, key=lambda p: p.b.start_line if p.b else 0):
        assert pair.a is not None and pair.b is not None
        policy = replace_clause(text_b, pair.b, clause_lines(text_a, pair.a))
        out.append(Variant(swap_key("B", pair.b.key), policy, "B", SWAP, pair.b.key, pair.a.key))
    return mark_duplicates(out)


def mark_duplicates(variants: list[Variant]) -> list[Variant]:
    """``same_as`` on every variant whose text an earlier one has (see above)."""
    first: dict[str, str] = {}
    marked = []
    for variant in variants:
        earlier = first.setdefault(variant.policy, variant.key)
        if earlier != variant.key:
            variant = replace(variant, same_as=earlier)
        marked.append(variant)
    return marked


def distinct(variants: Sequence[Variant]) -> list[Variant]:
    """The variants to score: each text once."""
    return [v for v in variants if not v.same_as]


def resolve(variants: Sequence[Variant], results: Mapping[str, T]) -> dict[str, T]:
    """Results for every variant key, a marked variant's copied from its ``same_as``."""
    out = dict(results)
    for variant in variants:
        if variant.same_as and variant.same_as in out:
            out[variant.key] = out[variant.same_as]
    return out
