"""The structure of a CoPE policy, read from its Markdown text.

A CoPE policy is Markdown, written the way Zentropi publishes them: any level-1 title (often
``# Criteria``), four level-2 sections (Overview, Definition of Terms, Interpretation of Language,
and Definition of Labels, or Definition of Label when there is one label). Under that last
section each label is a level-3 heading ``### (CODE) Name`` followed by ``#### Includes`` and
``#### Excludes`` lists.

Pure Python, shared by the editor's lint (web side) and the twin generator (worker side), so that
a generated twin is checked by exactly the rules the author sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REQUIRED_SECTIONS: tuple[str, ...] = (
    "Overview",
    "Definition of Terms",
    "Interpretation of Language",
    "Definition of Labels",
)
# "## Definition of Label" (one label) is the same section as "## Definition of Labels".
LABEL_SECTIONS = frozenset({"definition of labels", "definition of label"})

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_LABEL = re.compile(r"^\(\s*([A-Za-z0-9_.\-]+)\s*\)\s*(.*)$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.+)$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class LabelSpec:
    code: str
    name: str
    line: int
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    has_includes: bool = False
    has_excludes: bool = False


@dataclass
class ParsedPolicy:
    title: str
    sections: list[str]
    labels: list[LabelSpec]

    def label_codes(self) -> list[str]:
        return [label.code for label in self.labels]

    def criteria_counts(self) -> dict[str, tuple[int, int]]:
        return {lab.code: (len(lab.includes), len(lab.excludes)) for lab in self.labels}


def _normalise_section(title: str) -> str:
    return re.sub(r"\s+", " ", title.strip().strip(":")).lower()


def is_label_section(title: str) -> bool:
    """True for "Definition of Labels" and the singular "Definition of Label"."""
    return _normalise_section(title) in LABEL_SECTIONS


def parse_policy(text: str) -> ParsedPolicy:
    """Read headings, labels and their Includes/Excludes bullet lists from policy Markdown."""
    title = ""
    sections: list[str] = []
    labels: list[LabelSpec] = []
    in_labels = False
    current: LabelSpec | None = None
    bucket: list[str] | None = None
    in_fence = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if _FENCE.match(raw):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        heading = _HEADING.match(raw)
        if heading:
            level, name = len(heading.group(1)), heading.group(2).strip()
            if level == 1 and not title:
                title = name
            elif level == 2:
                sections.append(name)
                in_labels = is_label_section(name)
                current, bucket = None, None
            elif level == 3 and in_labels:
                match = _LABEL.match(name)
                code, label_name = (match.group(1), match.group(2)) if match else (name, name)
                current = LabelSpec(code=code.upper(), name=label_name.strip(), line=number)
                labels.append(current)
                bucket = None
            elif level >= 4 and current is not None:
                kind = _normalise_section(name)
                if kind.startswith("include"):
                    current.has_includes, bucket = True, current.includes
                elif kind.startswith("exclude"):
                    current.has_excludes, bucket = True, current.excludes
                else:
                    bucket = None
            continue
        bullet = _BULLET.match(raw)
        if bullet and bucket is not None:
            bucket.append(bullet.group(1).strip())
    return ParsedPolicy(title=title, sections=sections, labels=labels)


def missing_sections(parsed: ParsedPolicy) -> list[str]:
    present = {_normalise_section(s) for s in parsed.sections}
    if present & LABEL_SECTIONS:
        present |= LABEL_SECTIONS
    return [s for s in REQUIRED_SECTIONS if s.lower() not in present]


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def twin_problems(primary: str, twin: str) -> list[str]:
    """Why ``twin`` cannot be compared with ``primary`` at all (empty list: it can).

    Only what makes a binocular comparison meaningless is refused: an empty twin, or one that is
    identical once whitespace and case are normalised. Structural differences are
    ``twin_warnings``: the author asked for that comparison, and may have reasons.
    """
    if not twin.strip():
        return ["The twin is empty."]
    if _squash(primary) == _squash(twin):
        return [
            "The twin is identical to the primary text (ignoring whitespace and case); "
            "it must be worded differently."
        ]
    return []


def twin_warnings(primary: str, twin: str) -> list[str]:
    """How ``twin`` differs in structure from ``primary``: label codes, criteria counts, sections.

    Shown beside the twin, saved with it and repeated on every job that compares the two: the
    comparison still runs, but agreement then measures more than a change of wording.
    """
    if twin_problems(primary, twin):
        return []
    problems: list[str] = []
    a, b = parse_policy(primary), parse_policy(twin)
    codes_a, codes_b = a.label_codes(), b.label_codes()
    if codes_a != codes_b:
        only_a = [c for c in codes_a if c not in codes_b]
        only_b = [c for c in codes_b if c not in codes_a]
        detail = []
        if only_a:
            detail.append("missing from the twin: " + ", ".join(only_a))
        if only_b:
            detail.append("only in the twin: " + ", ".join(only_b))
        if not detail:
            detail.append("same codes in a different order")
        problems.append("Label codes differ (" + "; ".join(detail) + ").")
    counts_b = b.criteria_counts()
    for code, (inc_a, exc_a) in a.criteria_counts().items():
        if code not in counts_b:
            continue
        inc_b, exc_b = counts_b[code]
        if inc_a != inc_b:
            problems.append(
                f"Label {code}: {inc_a} Includes criteria in the primary text, {inc_b} in the twin."
            )
        if exc_a != exc_b:
            problems.append(
                f"Label {code}: {exc_a} Excludes criteria in the primary text, {exc_b} in the twin."
            )
    missing = missing_sections(b)
    if missing:
        problems.append("The twin lacks sections: " + ", ".join(missing) + ".")
    return problems
