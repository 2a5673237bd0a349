"""The permission check every view makes before it loads anything."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def require_perms(request: HttpRequest, *perms: str) -> None:
    """403 unless the user holds every permission named (``app_label.codename``)."""
    if not request.user.has_perms(perms):
        raise PermissionDenied
