"""The A → B wording diff on the review card, bounded whatever the length of the policy.

A word diff of two whole policies is quadratic in their length (109 s for a 75,000-character
policy and its twin). Here the texts are first compared line by line; only changed lines are
compared word by word, each block within ``MAX_BLOCK_WORDS``; unchanged lines are folded to
``CONTEXT_LINES`` on either side of a change; the output stops at ``MAX_CHARS`` and says how
many changed lines it left out. The reviewer opens the full texts on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from policies.diff import word_diff_html

CONTEXT_LINES = 2
MAX_BLOCK_WORDS = 400
MAX_CHARS = 20_000


@dataclass(frozen=True)
class WordingDiff:
    html: SafeString
    changed_lines: int  # lines of B that differ from A (or lines of A deleted)
    omitted_lines: int  # changed lines left out to keep the card small
    folded_lines: int  # unchanged lines folded away

    @property
    def complete(self) -> bool:
        return not self.omitted_lines


def _words(lines: list[str]) -> int:
    return sum(len(line.split()) for line in lines)


def _whole(tag: str, line: str) -> str:
    """A changed line too long to compare word by word, shown whole up to a quarter budget."""
    limit = MAX_CHARS // 4
    shown = str(escape(line[:limit]))
    if len(line) > limit:
        shown += f" … ({len(line) - limit:,} more characters)\n"
    return f'<{tag} class="diff">{shown}</{tag}>'


def _block(a: list[str], b: list[str], budget: int) -> tuple[str, int]:
    """One changed block as HTML within ``budget`` characters, and how many lines it left out.

    A small block gets a word diff; a large one is compared line pair by line pair, and a line
    too long for that is shown whole (cut).
    """
    if _words(a) <= MAX_BLOCK_WORDS and _words(b) <= MAX_BLOCK_WORDS:
        return str(word_diff_html("".join(a), "".join(b))), 0
    out: list[str] = []
    size = 0
    pairs = max(len(a), len(b))
    for i in range(pairs):
        if size >= budget:
            return "".join(out), pairs - i
        line_a = a[i] if i < len(a) else ""
        line_b = b[i] if i < len(b) else ""
        if line_a and line_b and max(_words([line_a]), _words([line_b])) <= MAX_BLOCK_WORDS:
            piece = str(word_diff_html(line_a, line_b))
        else:
            piece = (_whole("del", line_a) if line_a else "") + (
                _whole("ins", line_b) if line_b else ""
            )
        out.append(piece)
        size += len(piece)
    return "".join(out), 0


def _fold(count: int) -> str:
    noun = "line" if count == 1 else "lines"
    return f'<span class="diff-fold muted">… {count} unchanged {noun} …</span>\n'


@lru_cache(maxsize=32)
def wording_diff(text_a: str, text_b: str) -> WordingDiff:
    """``text_a`` → ``text_b`` as escaped HTML, bounded in time and size (see the module)."""
    lines_a = text_a.splitlines(keepends=True)
    lines_b = text_b.splitlines(keepends=True)
    # Lines compared without surrounding whitespace: re-wrapping is not a change. Blank lines
    # are frequent; autojunk keeps them from making the line match quadratic.
    matcher = SequenceMatcher(
        None, [line.strip() for line in lines_a], [line.strip() for line in lines_b]
    )
    opcodes = matcher.get_opcodes()
    out: list[str] = []
    size = changed = omitted = folded = 0
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            same = lines_b[j1:j2]
            head = same[:CONTEXT_LINES] if index > 0 else []
            tail = same[-CONTEXT_LINES:] if index < len(opcodes) - 1 else []
            if len(head) + len(tail) >= len(same):
                piece = str(escape("".join(same)))
            else:
                hidden = len(same) - len(head) - len(tail)
                folded += hidden
                piece = f"{escape(''.join(head))}{_fold(hidden)}{escape(''.join(tail))}"
        else:
            lines = max(i2 - i1, j2 - j1)
            changed += lines
            if size >= MAX_CHARS:
                omitted += lines
                continue
            piece, left_out = _block(lines_a[i1:i2], lines_b[j1:j2], MAX_CHARS - size)
            omitted += left_out
        if size >= MAX_CHARS:
            continue
        out.append(piece)
        size += len(piece)
    return WordingDiff(
        html=mark_safe("".join(out)),  # noqa: S308 - every piece is escaped or a word diff
        changed_lines=changed,
        omitted_lines=omitted,
        folded_lines=folded,
    )
