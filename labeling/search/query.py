"""What someone typed in a search box, parsed once and written for each database's full-text
engine: PostgreSQL ``to_tsquery`` (``simple`` configuration) and SQLite FTS5 ``MATCH``.

The grammar is small on purpose: words (all must match), ``"quoted phrases"`` and ``prefix*``.
Words are cut the way both engines cut text (runs of letters and digits, lower-cased), and each
one is written quoted, so nothing a user types is read as query syntax by either engine.
Pure Python: no Django here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Bounds a query's cost: each term is one index lookup.
MAX_TERMS = 8
MAX_TERM_LENGTH = 60
_WORD = re.compile(r"[^\W_]+")
_PART = re.compile(r'"([^"]*)"?|(\S+)')


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]  # one word, or a phrase's words in order
    prefix: bool = False  # the last word matches as a prefix


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...]

    def __bool__(self) -> bool:
        return bool(self.terms)

    @property
    def words(self) -> list[str]:
        return [w for t in self.terms for w in t.words]


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.lower()[:MAX_TERM_LENGTH] for w in _WORD.findall(text))


def parse(text: str) -> Query:
    """The terms of ``text``: every one must match. Punctuation inside a word splits it into a
    phrase (``e-mail`` is the phrase "e mail"), as both engines index it."""
    terms: list[Term] = []
    for match in _PART.finditer(text):
        quoted, bare = match.group(1), match.group(2)
        if quoted is not None:
            words = _words(quoted)
            prefix = False
        else:
            prefix = bare.endswith("*")
            words = _words(bare)
        if words:
            terms.append(Term(words, prefix))
        if len(terms) == MAX_TERMS:
            break
    return Query(tuple(terms))


def to_tsquery(query: Query) -> str:
    """The argument of ``to_tsquery('simple', …)``: ``'a' & ('b' <-> 'c') & 'pre':*``."""
    parts = []
    for term in query.terms:
        lexemes = [f"'{w}'" for w in term.words]
        if term.prefix:
            lexemes[-1] += ":*"
        parts.append(lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts)


def to_fts5(query: Query) -> str:
    """An FTS5 expression over the ``text`` column: ``{text} : ("a" AND "b c" AND "pre" *)``."""
    parts = []
    for term in query.terms:
        phrase = '"' + " ".join(term.words) + '"'
        parts.append(phrase + " *" if term.prefix else phrase)
    return "{text} : (" + " AND ".join(parts) + ")"


def highlight_pattern(query: Query) -> re.Pattern[str] | None:
    """A pattern for the query's words in a text, for snippets (case-insensitive)."""
    if not query:
        return None
    alternatives = []
    for term in query.terms:
        for i, word in enumerate(term.words):
            tail = r"\w*" if term.prefix and i == len(term.words) - 1 else r"(?![^\W_])"
            alternatives.append(r"(?<![^\W_])" + re.escape(word) + tail)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def snippet(text: str, query: Query, *, width: int = 240) -> list[tuple[str, bool]]:
    """About ``width`` characters of ``text`` around its first match, as (part, is_match)
    pairs: the template marks matches with an element and escapes every part, so a snippet of
    hostile content stays text."""
    pattern = highlight_pattern(query)
    first = pattern.search(text) if pattern else None
    start = max(0, (first.start() if first else 0) - width // 3)
    end = min(len(text), start + width)
    window = text[start:end]
    parts: list[tuple[str, bool]] = [("…", False)] if start else []
    at = 0
    for m in pattern.finditer(window) if pattern else ():
        if m.start() > at:
            parts.append((window[at : m.start()], False))
        parts.append((m.group(0), True))
        at = m.end()
    if at < len(window):
        parts.append((window[at:], False))
    if end < len(text):
        parts.append(("…", False))
    return parts
