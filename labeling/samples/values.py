"""One value read from a file: its size limits, the characters PostgreSQL cannot store, and
how it becomes text, JSON metadata and a content hash."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

# One CSV field or Parquet value at most: far beyond anything a model can label, and what a
# quote that never closes runs into long before it swallows the file.
MAX_FIELD_CHARS = 5_000_000
MAX_JSON_DEPTH = 64
REPLACEMENT = "\ufffd"
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}


class TooDeep(Exception):
    """A JSON value nested deeper than ``MAX_JSON_DEPTH``."""


def clean_str(value: str) -> tuple[str, bool]:
    """NUL and unpaired surrogates (JSON ``"\\ud800"``) replaced by U+FFFD; and whether any
    was."""
    changed = False
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
        changed = True
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            changed = True
    return value, changed


def clean_json(value: Any, depth: int = 0) -> tuple[Any, bool]:
    """A JSON value with every string (keys too) cleaned; raises ``TooDeep`` past the limit."""
    if isinstance(value, str):
        return clean_str(value)
    if not isinstance(value, dict | list):
        return value, False
    if depth >= MAX_JSON_DEPTH:
        raise TooDeep
    changed = False
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key, key_changed = clean_str(str(k))
            out[key], value_changed = clean_json(v, depth + 1)
            changed = changed or key_changed or value_changed
        return out, changed
    items = []
    for v in value:
        item, item_changed = clean_json(v, depth + 1)
        items.append(item)
        changed = changed or item_changed
    return items, changed


def as_text(value: Any) -> str:
    """A cell as the text an item holds: numbers and booleans spelled out, anything else as
    JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def json_safe(value: Any) -> Any:
    """A value the metadata's JSON column can store (a NaN or a date from Parquet cannot)."""
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)


def content_digest(text: str) -> bytes:
    """sha256 of the text with whitespace runs collapsed to one space and the ends trimmed."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).digest()


def content_hash(text: str) -> str:
    """``content_digest`` in hex: what ``Item.content_hash`` stores."""
    return content_digest(text).hex()


def parse_label(value: Any) -> tuple[int | None, bool]:
    """``(label, valid)``; blank means no label and is valid."""
    if value is None or value == "":
        return None, True
    if value == "0" or value == "1":
        return int(value), True
    if isinstance(value, bool):
        return int(value), True
    if isinstance(value, int | float) and value in (0, 1):
        return int(value), True
    text = as_text(value).strip().lower()
    if text == "":
        return None, True
    if text in _TRUE:
        return 1, True
    if text in _FALSE:
        return 0, True
    try:
        number = float(text)
    except (ValueError, OverflowError):
        return None, False
    return (int(number), True) if number in (0.0, 1.0) else (None, False)
