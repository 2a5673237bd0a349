"""Checks on text a person names things with (policies, sample sets, API keys, accounts)."""

from __future__ import annotations

from django.core.exceptions import ValidationError

# Bidirectional embeddings, overrides and isolates: they make a name display differently from
# what it is ("invoice‮txt.exe"), so a name that holds one is refused rather than cleaned.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)


def validate_no_bidi_controls(value: str) -> None:
    """Refuse a name holding a bidirectional control character, naming where it is."""
    for position, char in enumerate(value, start=1):
        if char in BIDI_CONTROLS:
            raise ValidationError(
                "Names cannot contain right-to-left or left-to-right control characters "
                f"(U+{ord(char):04X} at character {position}): they make a name read as "
                "something it is not. Remove it and try again.",
                code="bidi_control",
            )
