"""The unread count in the top bar: a callable, so the count runs only when a full page's
navigation shows it (once per page), never for htmx fragments."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest

from labeling.notify.services import unread_count


def notifications(request: HttpRequest) -> dict[str, Callable[[], int]]:
    user = request.user
    if not user.is_authenticated:
        return {}
    return {"notifications_unread": lambda: unread_count(user)}
