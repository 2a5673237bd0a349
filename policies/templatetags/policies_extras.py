from __future__ import annotations

from typing import Any

from django import template

from policies.services import twin_closeness
from worker.policy_text import twin_warnings

register = template.Library()


@register.filter
def as_percent(value: object, digits: int = 1) -> str:
    """0.953 → "95.3%"; blank for anything that is not a number."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f"{number * 100:.{digits}f}%"


@register.inclusion_tag("policies/_twin_checks.html")
def twin_checks(text: str, twin: str, saved_warnings: list[str] | None = None) -> dict[str, Any]:
    """How ``twin`` differs from ``text``: structural warnings and the share of words changed.

    ``saved_warnings`` (a version's ``twin_warnings``) are shown when given; otherwise they are
    computed from the two texts (a job's frozen texts, say).
    """
    if not (text.strip() and twin.strip()):
        return {"warnings": [], "closeness": None}
    warnings = twin_warnings(text, twin) if saved_warnings is None else saved_warnings
    return {"warnings": warnings, "closeness": twin_closeness(text, twin)}
