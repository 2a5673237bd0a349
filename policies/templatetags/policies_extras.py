from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def as_percent(value: object, digits: int = 1) -> str:
    """0.953 → "95.3%"; blank for anything that is not a number."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f"{number * 100:.{digits}f}%"
