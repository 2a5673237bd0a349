"""The policy variants a probe scores: does the model read this policy, or answer the topic?

For one version's text, ``build_probe_variants`` returns, each a ``worker.variants.Variant`` on
side ``"P"`` (so ``distinct`` and ``resolve`` apply unchanged):

* ``P``: the text itself;
* ``OFF``: the off-topic control, ``control_policy``: the shipped houseplant-care policy
  (``probe_control.md``) with the version's label codes, each label given the control's
  Includes and Excludes. An item labeled 1 under it was labeled by its topic, not the text;
* ``INV:<code>``: the label's Includes and Excludes criteria swapped (``invert_label``);
* ``DROP:<code>``: every Includes criterion of the label removed, headings kept. The items
  whose 1 came from that label are those labeled 1 under ``P`` and 0 under ``DROP``;
* ``P-:<clause key>``: the clause removed (``worker.clauses`` keys, as attribution removes).

Variants with the same text as an earlier one carry ``same_as`` (``worker.variants``' rule):
score ``distinct(...)`` and read the others with ``resolve``.

Inversion of a label without Excludes: its Includes heading is kept with no criterion under
it and its Includes criteria become its Excludes. No neutral criterion is invented: the CPU
baseline (``worker.embedding``) would embed it and compare every item with it, which moves
labels by how close an item happens to be to that sentence. With an empty Includes the
baseline gives the label no margin at all (an Includes heading with nothing under it includes
nothing), so an item whose 1 came from the label's Includes turns 0, which is what the probe
expects of CoPE too. ``DROP:<code>`` reads the same way: on a one-label policy it labels
everything 0.

Carve-out runs add ``TW`` (an LLM's rewording of the whole policy) and ``CO:<id>``
(``carveout_policy``: the text with one criterion appended as the last Excludes criterion of
its label). Pure Python (no Django): the web side builds the variants to send and to read.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from worker.clauses import EXCLUDE, INCLUDE, Clause, clause_lines, parse_clauses, remove_clause
from worker.policy_text import is_label_section, parse_policy
from worker.variants import BASE, REMOVAL, Variant, mark_duplicates, removal_key

SIDE = "P"
BASE_KEY, CONTROL_KEY, REWORDING_KEY = "P", "OFF", "TW"
CONTROL, INVERSION, DROP, REWORDING, CARVEOUT = (
    "control",
    "inversion",
    "drop",
    "rewording",
    "carveout",
)
CONTROL_PATH = Path(__file__).with_name("probe_control.md")

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_LABEL_LINE = re.compile(r"^(#{1,6}\s+\(\s*)CODE(\s*\).*)$", re.M)


def inversion_key(code: str) -> str:
    return f"INV:{code}"


def drop_key(code: str) -> str:
    return f"DROP:{code}"


def clause_removal_key(clause_key: str) -> str:
    return removal_key(SIDE, clause_key)


def carveout_key(carveout_id: int) -> str:
    return f"CO:{carveout_id}"


@dataclass(frozen=True)
class LabelBlock:
    """One label's lines in a text (0-based, ``end`` exclusive) and its two sub-headings."""

    code: str
    start: int  # the ``### (CODE) Name`` line
    end: int
    includes_heading: int | None  # line of ``#### Includes``, if any
    excludes_heading: int | None
    level: int  # the label heading's level (its sub-headings are one deeper)


def label_blocks(text: str) -> list[LabelBlock]:
    """Each label of the Definition of Labels section with its extent (``parse_policy``
    finds the labels; a block ends at the next heading of the label's level or above)."""
    lines = text.splitlines()
    out = []
    for spec in parse_policy(text).labels:
        start = spec.line - 1
        level = len(_HEADING.match(lines[start]).group(1))  # type: ignore[union-attr]
        end, heads = len(lines), {INCLUDE: None, EXCLUDE: None}
        for n in range(start + 1, len(lines)):
            match = _HEADING.match(lines[n])
            if match is None:
                continue
            if len(match.group(1)) <= level:
                end = n
                break
            title = match.group(2).strip().lower()
            kind = (
                INCLUDE
                if title.startswith("include")
                else EXCLUDE
                if title.startswith("exclude")
                else None
            )
            if kind is not None and heads[kind] is None:
                heads[kind] = n  # type: ignore[assignment]
        out.append(LabelBlock(spec.code, start, end, heads[INCLUDE], heads[EXCLUDE], level))
    return out


def _criteria(text: str, code: str, kind: str) -> list[Clause]:
    return [c for c in parse_clauses(text) if c.label == code and c.kind == kind]


def _sub_heading(lines: list[str], at: int | None, level: int, name: str) -> str:
    return lines[at] if at is not None else f"{'#' * min(6, level + 1)} {name}"


def invert_label(text: str, code: str) -> str:
    """The text with ``code``'s Includes and Excludes criteria swapped, headings kept (a
    missing heading is written); lines outside the label's block are kept as they are."""
    block = next((b for b in label_blocks(text) if b.code == code), None)
    if block is None:
        raise ValueError(f"no label ({code}) in the text")
    lines = text.splitlines()
    includes = [clause_lines(text, c) for c in _criteria(text, code, INCLUDE)]
    excludes = [clause_lines(text, c) for c in _criteria(text, code, EXCLUDE)]
    heads = [h for h in (block.includes_heading, block.excludes_heading) if h is not None]
    first = min(heads) if heads else block.end
    preamble = lines[block.start : first]
    while preamble and not preamble[-1].strip():
        preamble.pop()
    body = [
        *preamble,
        _sub_heading(lines, block.includes_heading, block.level, "Includes"),
        *excludes,
        _sub_heading(lines, block.excludes_heading, block.level, "Excludes"),
        *includes,
        "",
    ]
    rest = lines[block.end :]
    return "\n".join(lines[: block.start] + body + rest) + ("\n" if rest else "")


def drop_label(text: str, code: str) -> str:
    """The text without any Includes criterion of ``code`` (headings kept)."""
    for clause in sorted(_criteria(text, code, INCLUDE), key=lambda c: -c.start_line):
        text = remove_clause(text, clause)
    return text


def carveout_policy(text: str, code: str, criterion: str) -> str:
    """The text with ``criterion`` as the last Excludes criterion of ``code`` (an Excludes
    heading is added at the end of the label when it has none). The criterion is one line."""
    words = re.sub(r"\s+", " ", criterion).strip()
    words = re.sub(r"^(?:[-*+]|\d+[.)])(?:\s+|$)", "", words)
    if not words:
        raise ValueError("an empty carve-out criterion")
    block = next((b for b in label_blocks(text) if b.code == code), None)
    if block is None:
        raise ValueError(f"no label ({code}) in the text")
    lines = text.splitlines()
    excludes = _criteria(text, code, EXCLUDE)
    if excludes:
        at, new = excludes[-1].end_line, [f"- {words}"]
    elif block.excludes_heading is not None:
        at, new = block.excludes_heading + 1, [f"- {words}"]
    else:
        at = block.end
        while at > block.start + 1 and not lines[at - 1].strip():
            at -= 1
        new = [_sub_heading(lines, None, block.level, "Excludes"), f"- {words}"]
    out = lines[:at] + new + lines[at:]
    return "\n".join(out) + ("\n" if text.endswith("\n") or at < len(lines) else "")


@functools.lru_cache(maxsize=1)
def control_template() -> str:
    """The shipped off-topic policy (one label, code ``CODE``)."""
    return CONTROL_PATH.read_text(encoding="utf-8")


def control_policy(text: str) -> str:
    """The off-topic control with ``text``'s label codes (each label the control's criteria)
    and its label section's title (Definition of Label or Labels)."""
    parsed = parse_policy(text)
    head, _, label = control_template().partition("\n### ")
    label = "### " + label.rstrip("\n") + "\n"
    section = next((s for s in parsed.sections if is_label_section(s)), "")
    if section:
        head = re.sub(r"^## Definition of Labels[ \t]*$", f"## {section}", head, flags=re.M)
    codes = parsed.label_codes() or ["CODE"]
    blocks = [_LABEL_LINE.sub(rf"\g<1>{code}\g<2>", label) for code in codes]
    return head + "\n" + "\n".join(blocks)


def build_probe_variants(text: str) -> list[Variant]:
    """``P``, ``OFF``, per label ``INV:`` and ``DROP:``, per clause ``P-:`` (see above)."""
    out = [
        Variant(BASE_KEY, text, SIDE, BASE, ""),
        Variant(CONTROL_KEY, control_policy(text), SIDE, CONTROL, ""),
    ]
    for code in parse_policy(text).label_codes():
        out.append(Variant(inversion_key(code), invert_label(text, code), SIDE, INVERSION, code))
        out.append(Variant(drop_key(code), drop_label(text, code), SIDE, DROP, code))
    out += [
        Variant(clause_removal_key(c.key), remove_clause(text, c), SIDE, REMOVAL, c.key)
        for c in parse_clauses(text)
    ]
    return mark_duplicates(out)


def build_carveout_variants(
    text: str, rewording: str, carveouts: list[tuple[int, str, str]]
) -> list[Variant]:
    """``TW`` (when ``rewording``) and ``CO:<id>`` per ``(id, label code, criterion)``."""
    out = [Variant(REWORDING_KEY, rewording, SIDE, REWORDING, "")] if rewording.strip() else []
    out += [
        Variant(carveout_key(pk), carveout_policy(text, code, criterion), SIDE, CARVEOUT, code)
        for pk, code, criterion in carveouts
    ]
    return out
