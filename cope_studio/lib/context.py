"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def studio(request: HttpRequest) -> dict[str, object]:
    return {
        "cope_backend": settings.COPE_BACKEND,
        "cope_backend_is_weak": settings.COPE_BACKEND == "embedding",
    }
