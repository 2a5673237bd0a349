"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def _nav_section(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    name = match.view_name if match else ""
    if name.startswith("labeling:sampleset"):
        return "samples"
    if name.startswith("labeling:queue") or name.startswith("labeling:review"):
        return "review"
    if name.startswith(("policies:", "labeling:")):
        return "policies"
    return ""


def studio(request: HttpRequest) -> dict[str, object]:
    return {
        "nav": _nav_section(request),
        "time_zone": settings.TIME_ZONE,
        "cope_backend": settings.COPE_BACKEND,
        "cope_backend_is_weak": settings.COPE_BACKEND == "embedding",
    }
