"""A policy read as clauses: the parts an author names when saying which wording decided a label.

A clause is the Overview, one entry of Definition of Terms, one entry of Interpretation of
Language, or one criterion under a label's Includes or Excludes. Each has a stable key
(``label/SH/includes/2``), knows its lines in the text, and can be removed (its heading kept) or
replaced by another wording, which is how attribution builds the policy variants it scores.

A policy and its twin are aligned clause to clause: the same section, label and position when
both wordings have the same number of clauses there, else the best word overlap; a clause with no
counterpart is kept, unaligned, and shown as such.

Pure Python (no Django): the web side shows clauses and the model worker builds variants with the
same rules, as ``worker.policy_text`` does for structure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from worker.policy_text import is_label_section

OVERVIEW, TERM, INTERPRETATION, INCLUDE, EXCLUDE = (
    "overview",
    "term",
    "interpretation",
    "include",
    "exclude",
)
# Section titles (normalised) that hold clauses, and the kind of clause each holds.
_SECTION_KINDS = {
    "overview": OVERVIEW,
    "definition of terms": TERM,
    "definitions of terms": TERM,
    "definitions": TERM,
    "interpretation of language": INTERPRETATION,
    "interpretation": INTERPRETATION,
}
# Below this word overlap (Jaccard) two clauses of different positions are not the same clause.
MIN_OVERLAP = 0.2

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_LABEL = re.compile(r"^\(\s*([A-Za-z0-9_.\-]+)\s*\)\s*(.*)$")
_BULLET = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_NAME = re.compile(r"^\s*(?:\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__)\s*[:.\-–—]?\s*")
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Clause:
    """One clause of a policy text. Lines are 1-based and inclusive."""

    key: str  # overview | term/2 | interpretation/1 | label/SH/includes/3 | label/SH/excludes/1
    kind: str  # OVERVIEW, TERM, INTERPRETATION, INCLUDE or EXCLUDE
    label: str  # the label's code for criteria, "" otherwise
    position: int  # 1-based, within its section (or its label's Includes / Excludes)
    name: str  # the bold name opening the entry ("Self-harm instructions"), if any
    text: str  # the clause's words as written, without the list marker, lines joined by spaces
    start_line: int
    end_line: int

    @property
    def group(self) -> tuple[str, str]:
        return (self.kind, self.label)

    @property
    def where(self) -> str:
        """Where it is, in words: "Includes of (SH), criterion 2"."""
        if self.kind == OVERVIEW:
            return "Overview"
        if self.kind == TERM:
            return f"Definition of Terms, entry {self.position}"
        if self.kind == INTERPRETATION:
            return f"Interpretation of Language, entry {self.position}"
        side = "Includes" if self.kind == INCLUDE else "Excludes"
        return f"{side} of ({self.label}), criterion {self.position}"


@dataclass(frozen=True)
class AlignedPair:
    """A clause of A and its counterpart in B; either side is None when it has none."""

    a: Clause | None
    b: Clause | None
    how: str  # "position", "overlap", or "unaligned"


def _normalise(title: str) -> str:
    return re.sub(r"\s+", " ", title.strip().strip(":")).lower()


class _Reader:
    """Walks the lines once, closing a clause where the next one, a heading or a gap starts."""

    def __init__(self) -> None:
        self.clauses: list[Clause] = []
        self.kind: str | None = None
        self.label = ""
        self.open: list[tuple[int, str]] = []  # (line number, line) of the clause being read
        self.bulleted = False  # the open clause is a list entry (continues until the next one)
        self.counts: dict[tuple[str, str], int] = {}

    def close(self) -> None:
        if not self.open or self.kind is None:
            self.open = []
            return
        while self.open and not self.open[-1][1].strip():
            self.open.pop()
        if not self.open:
            return
        first = _BULLET.match(self.open[0][1])
        head = first.group(2) if first else self.open[0][1].strip()
        words = " ".join([head] + [line.strip() for _, line in self.open[1:]]).strip()
        named = _NAME.match(words)
        name = (named.group(1) or named.group(2)).strip() if named else ""
        group = (self.kind, self.label)
        position = self.counts.get(group, 0) + 1
        self.counts[group] = position
        self.clauses.append(
            Clause(
                key=_key(self.kind, self.label, position),
                kind=self.kind,
                label=self.label,
                position=position,
                name=name,
                text=words,
                start_line=self.open[0][0],
                end_line=self.open[-1][0],
            )
        )
        self.open = []

    def heading(self, level: int, title: str, in_labels: bool) -> bool:
        """Take a heading; returns whether the Definition of Labels section is (still) open."""
        self.close()
        if level <= 2:
            in_labels = level == 2 and is_label_section(title)
            self.kind = None if level == 1 else _SECTION_KINDS.get(_normalise(title))
            self.label = ""
        elif in_labels and level == 3:
            match = _LABEL.match(title)
            self.label = (match.group(1) if match else title).upper()
            self.kind = None
        elif in_labels and self.label:
            kind = _normalise(title)
            self.kind = (
                INCLUDE
                if kind.startswith("include")
                else EXCLUDE
                if kind.startswith("exclude")
                else None
            )
        return in_labels

    def line(self, number: int, raw: str) -> None:
        if self.kind is None:
            return
        bullet = _BULLET.match(raw)
        if self.kind == OVERVIEW:  # one clause: the whole section
            if raw.strip() or self.open:
                self.open.append((number, raw))
            return
        if bullet and not bullet.group(1):  # a new top-level entry
            self.close()
            self.open, self.bulleted = [(number, raw)], True
        elif not raw.strip():
            if not self.bulleted:
                self.close()  # a paragraph ends at a blank line
            elif self.open:
                self.open.append((number, raw))
        elif self.open:
            self.open.append((number, raw))  # a continuation or a nested list
        else:
            self.open, self.bulleted = [(number, raw)], False


def _key(kind: str, label: str, position: int) -> str:
    if kind == OVERVIEW:
        return OVERVIEW
    if kind in (TERM, INTERPRETATION):
        return f"{kind}/{position}"
    return f"label/{label}/{'includes' if kind == INCLUDE else 'excludes'}/{position}"


def parse_clauses(text: str) -> list[Clause]:
    """The clauses of a policy text, in the order they are written."""
    reader = _Reader()
    in_labels = in_fence = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if _FENCE.match(raw):
            in_fence = not in_fence
        if in_fence or _FENCE.match(raw):
            reader.line(number, raw)
            continue
        heading = _HEADING.match(raw)
        if heading:
            in_labels = reader.heading(len(heading.group(1)), heading.group(2).strip(), in_labels)
        else:
            reader.line(number, raw)
    reader.close()
    return reader.clauses


def clause_lines(text: str, clause: Clause) -> str:
    """The clause exactly as written, list marker and line breaks included."""
    lines = text.splitlines()
    return "\n".join(lines[clause.start_line - 1 : clause.end_line])


def replace_clause(text: str, clause: Clause, wording: str) -> str:
    """The text with the clause's lines replaced by ``wording`` (no wording: removed, its
    heading kept). Lines outside the clause are kept byte for byte."""
    lines = text.splitlines(keepends=True)
    before, after = lines[: clause.start_line - 1], lines[clause.end_line :]
    ending = "\n" if lines and lines[clause.end_line - 1].endswith("\n") else ""
    middle = [wording.rstrip("\n") + ending] if wording.strip() else []
    return "".join(before + middle + after)


def remove_clause(text: str, clause: Clause) -> str:
    """The text without the clause (its section's and label's headings kept)."""
    return replace_clause(text, clause, "")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def overlap(a: str, b: str) -> float:
    """Jaccard overlap of two clauses' words (0 when either has none)."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def _label_map(a: Iterable[Clause], b: Iterable[Clause]) -> dict[str, str]:
    """B's label codes onto A's: the same code, else the same position among the labels."""
    codes_a = list(dict.fromkeys(c.label for c in a if c.label))
    codes_b = list(dict.fromkeys(c.label for c in b if c.label))
    mapping = {code: code for code in codes_b if code in codes_a}
    spare_a = [code for code in codes_a if code not in mapping.values()]
    spare_b = [code for code in codes_b if code not in mapping]
    mapping.update(zip(spare_b, spare_a, strict=False))
    return mapping


def _pair_group(a: list[Clause], b: list[Clause]) -> list[AlignedPair]:
    if len(a) == len(b):
        return [AlignedPair(x, y, "position") for x, y in zip(a, b, strict=True)]
    scored = sorted(
        ((overlap(x.text, y.text), i, j) for i, x in enumerate(a) for j, y in enumerate(b)),
        key=lambda s: (-s[0], s[1], s[2]),
    )
    matched_a: dict[int, int] = {}
    matched_b: set[int] = set()
    for score, i, j in scored:
        if score < MIN_OVERLAP:
            break
        if i not in matched_a and j not in matched_b:
            matched_a[i] = j
            matched_b.add(j)
    pairs = [
        AlignedPair(x, b[matched_a[i]], "overlap")
        if i in matched_a
        else AlignedPair(x, None, "unaligned")
        for i, x in enumerate(a)
    ]
    pairs += [AlignedPair(None, y, "unaligned") for j, y in enumerate(b) if j not in matched_b]
    return pairs


def align_clauses(a: list[Clause], b: list[Clause]) -> list[AlignedPair]:
    """A's clauses with their counterparts in B, in A's order, then B's unaligned ones."""
    labels = _label_map(a, b)
    groups_b: dict[tuple[str, str], list[Clause]] = {}
    for clause in b:
        groups_b.setdefault((clause.kind, labels.get(clause.label, clause.label)), []).append(
            clause
        )
    groups_a: dict[tuple[str, str], list[Clause]] = {}
    for clause in a:
        groups_a.setdefault(clause.group, []).append(clause)
    pairs: list[AlignedPair] = []
    for group, clauses in groups_a.items():
        pairs += _pair_group(clauses, groups_b.pop(group, []))
    for clauses in groups_b.values():
        pairs += [AlignedPair(None, clause, "unaligned") for clause in clauses]
    order = {id(c): n for n, c in enumerate(a)}
    return sorted(pairs, key=lambda p: (p.a is None, order.get(id(p.a), 0)))
