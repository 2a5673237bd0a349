"""Reading JSON Lines: one object per line, every string cleaned, nesting bounded."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from labeling.samples.errors import ImportFileError
from labeling.samples.values import MAX_JSON_DEPTH, TooDeep, clean_json

_EXAMPLE = 'must be one JSON object, e.g. {"id": "a1", "text": "…"}.'


def _too_deep(number: int) -> ImportFileError:
    return ImportFileError(
        f"Line {number} nests JSON more than {MAX_JSON_DEPTH} levels deep. Flatten the "
        "object (the text, id and label must be top-level keys) and upload it again."
    )


def parse_json_line(number: int, line: str) -> tuple[dict[str, Any], bool]:
    """The line's object with every string cleaned, and whether any string changed."""
    try:
        value = json.loads(line)
    except RecursionError:
        raise _too_deep(number) from None
    except ValueError as exc:
        raise ImportFileError(
            f"Line {number} is not valid JSON ({exc}). Each line of a JSON Lines file " + _EXAMPLE
        ) from None
    if not isinstance(value, dict):
        raise ImportFileError(
            f"Line {number} is a JSON {type(value).__name__}, not an object. Each line " + _EXAMPLE
        )
    try:
        cleaned, changed = clean_json(value)
    except TooDeep:
        raise _too_deep(number) from None
    return cleaned, changed


def jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, bool]]:
    """``(line number, object, a string was cleaned)``; ``None`` for a blank line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            yield number, None, False
            continue
        obj, changed = parse_json_line(number, line)
        yield number, obj, changed
