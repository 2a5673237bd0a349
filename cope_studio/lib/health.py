"""``/healthz`` for load balancers and container health checks.

Answered by a middleware placed first, before host validation, the HTTPS redirect, sessions and
login: a load balancer probes by IP address over plain HTTP, and must get an answer even when
``DJANGO_ALLOWED_HOSTS`` names only the public host. 200 when the database and the broker answer,
503 otherwise; the body says which of the two failed and nothing more (the reason is logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse

from cope_studio.celery import app

log = logging.getLogger(__name__)

PATH = "/healthz"
TIMEOUT_SECONDS = 2.0


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        log.exception("healthz: the database does not answer")
        return False
    return True


def broker_ok() -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=TIMEOUT_SECONDS)
            # Redis connects lazily: a round trip proves the server answers.
            client = getattr(conn.default_channel, "client", None)
            if client is not None and hasattr(client, "ping"):
                client.ping()
    except Exception:
        log.exception("healthz: the broker does not answer")
        return False
    return True


def healthz(request: HttpRequest) -> HttpResponse:
    checks = {"database": database_ok(), "broker": broker_ok()}
    healthy = all(checks.values())
    body = {"status": "ok" if healthy else "unavailable"}
    body.update({name: "ok" if ok else "unavailable" for name, ok in checks.items()})
    response = HttpResponse(
        json.dumps(body), status=200 if healthy else 503, content_type="application/json"
    )
    response["Cache-Control"] = "no-store"
    return response


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info in (PATH, PATH + "/") and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)
