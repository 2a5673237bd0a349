"""System checks run by every ``manage.py`` command (``migrate`` on container start included)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from cope_studio.lib.secret_key import refusal_message


@register()
def weak_secret_key(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    reason: str = getattr(settings, "WEAK_SECRET_KEY_REASON", "")
    if not reason:
        return []
    return [Error(refusal_message(reason), id="cope_studio.E001")]
