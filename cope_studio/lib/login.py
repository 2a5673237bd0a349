"""Login throttling (django-axes): which client a sign-in came from, and the page a locked-out
person sees.

Failures are counted per account and per client address (``AXES_LOCKOUT_PARAMETERS``): after
``COPE_LOGIN_FAILURE_LIMIT`` failures either one is refused, even with the right password, until
``COPE_LOGIN_COOLOFF_MINUTES`` pass without another try, or an admin unlocks it (Admin → Access
attempts, or ``manage.py axes_reset_username NAME`` / ``axes_reset_ip ADDRESS``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_address(request: HttpRequest) -> str | None:
    """The address a sign-in came from.

    Behind ``COPE_PROXY_COUNT`` proxies that each append the address they saw to
    ``X-Forwarded-For``, the client is the entry that many places from the right: entries further
    left were written by the client and prove nothing. Without proxies (the default) it is the
    connection's address; a client's own ``X-Forwarded-For`` is then ignored.
    """
    proxies = int(settings.COPE_PROXY_COUNT)
    if proxies:
        forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    address = request.META.get("REMOTE_ADDR")
    return str(address) if address else None


def cooloff_minutes() -> int:
    return int(settings.COPE_LOGIN_COOLOFF_MINUTES)


def locked_out(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """The page shown instead of the login form once an account or address is locked (429)."""
    return render(
        request,
        "registration/locked_out.html",
        {"cooloff_minutes": cooloff_minutes()},
        status=429,
    )
