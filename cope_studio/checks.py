"""System checks of the project.

The weak-key check is a deploy check (``manage.py check --deploy``): the refusal to *serve* with
a weak key is in ``cope_studio.wsgi``; management commands (migrations, benchmarks, tests) keep
working with a throwaway key.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from cope_studio.lib.secret_key import refusal_message


@register(deploy=True)
def weak_secret_key(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    reason: str = getattr(settings, "WEAK_SECRET_KEY_REASON", "")
    if not reason:
        return []
    return [Error(refusal_message(reason), id="cope_studio.E001")]
