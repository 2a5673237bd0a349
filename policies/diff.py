"""Word-level diff of two texts as escaped HTML with ``<ins class="diff">``/``<del class="diff">``.

Words are compared without their surrounding whitespace, so re-wrapping a line does not show as
a change; the whitespace shown is the newer text's. Every piece of text is escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_TOKEN = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class DiffStats:
    inserted: int
    deleted: int
    words_a: int = 0
    words_b: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.deleted)

    @property
    def changed_share(self) -> float:
        """Share of words changed between the two texts, 0 (same words) to 1 (none shared).

        The words the diff marks deleted plus those it marks inserted, over the words of both
        texts: symmetric, and a full rewording of every word counts 1.
        """
        total = self.words_a + self.words_b
        return (self.inserted + self.deleted) / total if total else 0.0


def _tokens(text: str) -> tuple[str, list[str]]:
    """Leading whitespace, then each word with the whitespace that follows it."""
    lead = text[: len(text) - len(text.lstrip())]
    return lead, _TOKEN.findall(text)


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    keys_a = [t.strip() for t in a]
    keys_b = [t.strip() for t in b]
    return list(SequenceMatcher(None, keys_a, keys_b, autojunk=False).get_opcodes())


def word_diff_html(a: str, b: str) -> SafeString:
    """``a`` → ``b`` as HTML: deleted words in ``<del>``, inserted words in ``<ins>``, escaped."""
    lead_a, ta = _tokens(a)
    lead_b, tb = _tokens(b)
    out: list[str] = [escape(lead_b if tb else lead_a)]
    for tag, i1, i2, j1, j2 in _opcodes(ta, tb):
        if tag == "equal":
            out.append(escape("".join(tb[j1:j2])))
            continue
        if tag in ("delete", "replace"):
            out.append(f'<del class="diff">{escape("".join(ta[i1:i2]))}</del>')
        if tag in ("insert", "replace"):
            out.append(f'<ins class="diff">{escape("".join(tb[j1:j2]))}</ins>')
    return mark_safe("".join(out))  # noqa: S308 - every piece above is escaped


def diff_stats(a: str, b: str) -> DiffStats:
    """How many words were inserted and deleted going from ``a`` to ``b``."""
    _lead, ta = _tokens(a)
    _lead, tb = _tokens(b)
    inserted = deleted = 0
    for tag, i1, i2, j1, j2 in _opcodes(ta, tb):
        if tag in ("delete", "replace"):
            deleted += i2 - i1
        if tag in ("insert", "replace"):
            inserted += j2 - j1
    return DiffStats(inserted=inserted, deleted=deleted, words_a=len(ta), words_b=len(tb))
