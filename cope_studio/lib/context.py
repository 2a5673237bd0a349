"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

# The main menu's item each page highlights, from where its view lives: the first prefix of
# ``module.function`` that matches wins. A job, its items, finalize and Try are reached from a
# version, so they stay under "policies"; Try lives with the API (it runs the API's labeling).
_SECTIONS = (
    ("labeling.api.views.try_run", "policies"),
    ("labeling.api.", "api"),
    ("labeling.samples.", "samples"),
    ("labeling.review.team_views.adjudica", "adjudication"),
    ("labeling.review.", "review"),
    ("labeling.workers.", "workers"),
    ("labeling.search.", "search"),  # the search box, not a menu item
    ("labeling.jobs.list_views.", "jobs"),
    ("labeling.", "policies"),
    ("policies.", "policies"),
)


def nav_section(request: HttpRequest) -> str:
    """The menu section of the page the request resolved to ("" outside every section)."""
    match = request.resolver_match
    if match is None:
        return ""
    view = match.func  # a partial for django-ninja's routes, which have no name of their own
    path = f"{view.__module__}.{getattr(view, '__name__', '')}"
    return next((section for prefix, section in _SECTIONS if path.startswith(prefix)), "")


def studio(request: HttpRequest) -> dict[str, object]:
    return {
        "nav": nav_section(request),
        "time_zone": settings.TIME_ZONE,
        "cope_backend": settings.COPE_BACKEND,
        "cope_backend_is_weak": settings.COPE_BACKEND == "embedding",
    }
