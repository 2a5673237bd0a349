"""Lint for policy Markdown: what makes a CoPE policy incomplete or non-deterministic.

Structure (sections, labels) comes from ``worker.policy_text``, the same parser the twin
generator checks its output with. The rules that need line numbers (intent words, bold terms)
walk the lines here. Pure functions: the editor calls them on every pause in typing.

Zentropi's published policies name each criterion in bold at the start of its list item
(``- **Self-harm instructions**: ...``) and quote example content (``"I want to die"``): a
criterion name is not a use of a defined term, and an example is not the policy's own wording,
so the wording rules skip both. Structural findings (what makes the policy unusable) come
first in the report, whatever their line, so they are never buried under wording notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from policies.tokens import TokenCount, count_policy_tokens
from worker.policy_text import (
    is_label_section,
    missing_sections,
    parse_policy,
    twin_problems,
    twin_warnings,
)

ERROR, WARNING = "error", "warning"

# Words that ask the labeler to guess what the writer had in mind. CoPE sees only the text, so
# a criterion that depends on intent is labeled differently from one run (or wording) to the next.
INTENT_PHRASES = (
    "intended to", "intends to", "intend to", "meant to", "trying to", "tries to", "try to",
    "in order to", "aims to", "aim to", "wants to", "want to",
)  # fmt: skip
_INTENT = re.compile(
    r"\b(" + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in INTENT_PHRASES) + r")\b",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
# Raw HTML and links: the preview strips tags and unsafe links, but CoPE reads the raw text.
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(\s[^<>]*)?/?>")
_LINK = re.compile(r"\]\(\s*([^)\s]+)[^)]*\)")
_SAFE_SCHEMES = ("http://", "https://", "mailto:")
# A bold name opening a list item and followed by a colon or dash, ending in a colon, or alone
# on its line (the description below it): the criterion's name, as Zentropi writes it, not a
# defined term.
_CRITERION_NAME = re.compile(
    r"^\s*(?:[-*+]|\d+[.)])\s+"
    r"(?:\*\*(?=\S)(?P<a>.+?)(?<=\S)\*\*|__(?=\S)(?P<b>.+?)(?<=\S)__)"
    r"(?P<after>\s*[:\u2014\u2013]|\s+-\s|\s*$)?"
)
# Quoted example content: code spans, then straight and curly double quotes, on one line.
_QUOTED = re.compile(r"`[^`\n]+`|\"[^\"\n]*\"|\u201c[^\u201c\u201d\n]*\u201d")
_BLOCKQUOTE = re.compile(r"^\s{0,3}>")
# Findings about the policy's shape: listed before the wording notes.
STRUCTURAL_RULES = frozenset(
    {"missing-section", "no-labels", "label-includes", "label-excludes", "token-budget"}
)
# The starter template's placeholders: a policy that still has them is not written yet.
PLACEHOLDERS = ("Policy name", "(CODE1) Label name", "**Term**")


@dataclass(frozen=True)
class LintIssue:
    rule: str  # missing-section, label-includes, label-excludes, no-labels, intent-word, ...
    message: str
    line: int | None = None
    column: int | None = None
    severity: str = WARNING

    @property
    def structural(self) -> bool:
        return self.rule in STRUCTURAL_RULES


@dataclass(frozen=True)
class LintReport:
    issues: list[LintIssue]
    tokens: TokenCount
    label_count: int = 0
    structure: list[str] = field(default_factory=list)  # twin only: why it is refused
    warnings: list[str] = field(default_factory=list)  # twin only: structural differences

    @property
    def errors(self) -> list[LintIssue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def structural(self) -> list[LintIssue]:
        return [i for i in self.issues if i.structural]

    @property
    def wording(self) -> list[LintIssue]:
        return [i for i in self.issues if not i.structural]

    @property
    def clean(self) -> bool:
        return not self.issues and not self.structure


def _section_key(title: str) -> str:
    return re.sub(r"\s+", " ", title.strip().strip(":")).lower()


def _term_key(term: str) -> str:
    key = re.sub(r"\s+", " ", term.strip().strip(":.,;").strip()).lower()
    for suffix in ("es", "s"):
        if key.endswith(suffix) and len(key) > len(suffix) + 2:
            return key[: -len(suffix)]
    return key


def _lines_with_sections(text: str) -> list[tuple[int, str, str]]:
    """(line number, level-2 section key, line) for every line outside code fences."""
    out: list[tuple[int, str, str]] = []
    section, in_fence = "", False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) == 2:
            section = _section_key(heading.group(2))
        out.append((number, section, line))
    return out


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


def _own_words(line: str) -> str:
    """``line`` with quoted examples (quotes, code spans, a blockquote) blanked out; columns
    stay where they were."""
    if _BLOCKQUOTE.match(line):
        return " " * len(line)
    return _QUOTED.sub(_blank, line)


def _intent_issues(lines: list[tuple[int, str, str]]) -> list[LintIssue]:
    issues = []
    for number, _section, line in lines:
        for match in _INTENT.finditer(_own_words(line)):
            phrase = re.sub(r"\s+", " ", match.group(1))
            issues.append(
                LintIssue(
                    rule="intent-word",
                    message=(
                        f"“{phrase}” asks CoPE to guess intent; describe what the content "
                        "itself says or does."
                    ),
                    line=number,
                    column=match.start() + 1,
                )
            )
    return issues


def _markup_issues(lines: list[tuple[int, str, str]]) -> list[LintIssue]:
    issues = []
    for number, _section, line in lines:
        for match in _HTML_TAG.finditer(line):
            issues.append(
                LintIssue(
                    rule="raw-html",
                    message=f"Raw HTML {match.group(0)[:40]!r}: the preview hides it, but CoPE "
                    "reads it as part of the policy. Write it as plain text.",
                    line=number,
                    column=match.start() + 1,
                )
            )
        for match in _LINK.finditer(line):
            target = match.group(1)
            if not target.lower().startswith(_SAFE_SCHEMES):
                issues.append(
                    LintIssue(
                        rule="unsafe-link",
                        message=f"Link to {target[:60]!r} is not http(s) or mailto: it is shown "
                        "as plain text, and CoPE cannot follow links anyway.",
                        line=number,
                        column=match.start() + 1,
                    )
                )
    return issues


def _placeholder_issues(lines: list[tuple[int, str, str]]) -> list[LintIssue]:
    return [
        LintIssue(
            rule="placeholder",
            message=f"“{placeholder}” is still the starter template's placeholder.",
            line=number,
            column=line.find(placeholder) + 1,
        )
        for number, _section, line in lines
        for placeholder in PLACEHOLDERS
        if placeholder in line
    ]


def _bold_terms(line: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in _BOLD.finditer(line)]


def _is_criterion_name(match: re.Match[str]) -> bool:
    name = match.group("a") or match.group("b")
    return match.group("after") is not None or name.endswith(":")


def _term_uses(line: str) -> list[tuple[str, int]]:
    """Bold terms the line uses (term, 1-based column): not a criterion's name, not in a quote."""
    words = _own_words(line)
    start = 0
    name = _CRITERION_NAME.match(words)
    if name is not None and _is_criterion_name(name):
        start = name.end()
    return [(m.group(1) or m.group(2), m.start() + 1) for m in _BOLD.finditer(words, start)]


def _term_issues(lines: list[tuple[int, str, str]]) -> list[LintIssue]:
    defined = {
        _term_key(term)
        for _n, section, line in lines
        if section == "definition of terms"
        for term in _bold_terms(line)
    }
    issues, seen = [], set()
    for number, section, line in lines:
        if not is_label_section(section) or _HEADING.match(line):
            continue
        for term, column in _term_uses(line):
            key = _term_key(term)
            if key in defined or key in seen:
                continue
            seen.add(key)
            issues.append(
                LintIssue(
                    rule="undefined-term",
                    message=f"**{term}** is bold (a defined term) but not defined in "
                    "Definition of Terms.",
                    line=number,
                    column=column,
                )
            )
    return issues


def _structure_issues(text: str) -> tuple[list[LintIssue], int]:
    parsed = parse_policy(text)
    issues = [
        LintIssue(
            rule="missing-section",
            message=f"Missing section: ## {name}"
            + (" (or ## Definition of Label)" if name == "Definition of Labels" else ""),
            severity=ERROR,
        )
        for name in missing_sections(parsed)
    ]
    has_label_section = any(is_label_section(s) for s in parsed.sections)
    if has_label_section and not parsed.labels:
        issues.append(
            LintIssue(
                rule="no-labels",
                message="Definition of Label(s) has no labels: add “### (CODE) Name” headings.",
                severity=ERROR,
            )
        )
    for label in parsed.labels:
        for kind, present, items in (
            ("Includes", label.has_includes, label.includes),
            ("Excludes", label.has_excludes, label.excludes),
        ):
            if not present:
                message = f"Label ({label.code}) has no “#### {kind}” list."
            elif not items:
                message = f"Label ({label.code}) has an empty {kind} list."
            else:
                continue
            issues.append(
                LintIssue(
                    rule=f"label-{kind.lower()}", message=message, line=label.line, severity=ERROR
                )
            )
    return issues, len(parsed.labels)


def _token_issue(tokens: TokenCount) -> list[LintIssue]:
    if not tokens.over_budget:
        return []
    return [
        LintIssue(
            rule="token-budget",
            message=(
                f"The prompt uses {tokens.display} of {tokens.limit:,} before any content: "
                "CoPE cannot label anything under this policy. Shorten it."
            ),
            severity=ERROR,
        )
    ]


def lint_policy(text: str) -> LintReport:
    """Every lint issue in ``text``: structural findings first, then the rest; each group by
    line (whole-text issues first)."""
    lines = _lines_with_sections(text)
    structure, label_count = _structure_issues(text)
    tokens = count_policy_tokens(text)
    issues = (
        structure
        + _intent_issues(lines)
        + _term_issues(lines)
        + _markup_issues(lines)
        + _placeholder_issues(lines)
        + _token_issue(tokens)
    )
    issues.sort(key=lambda i: (not i.structural, i.line is not None, i.line or 0, i.column or 0))
    return LintReport(issues=issues, tokens=tokens, label_count=label_count)


def lint_twin(text: str, twin: str) -> LintReport:
    """The twin's own lint, why it is refused (if it is) and how its structure differs."""
    report = lint_policy(twin)
    return LintReport(
        issues=report.issues,
        tokens=report.tokens,
        label_count=report.label_count,
        structure=twin_problems(text, twin),
        warnings=twin_warnings(text, twin),
    )
