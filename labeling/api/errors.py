"""The API's errors: every answer on its paths is JSON ``{"detail", "code"}``, whatever went
wrong (ninja's own 400/404/405 and an unexpected exception included); a 422 has one shape,
``UnprocessableOut``."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from datetime import UTC
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import URLPattern, URLResolver, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from labeling.api.keys import KeyExpired

# Where Django logs its own 500s (and mails them, where ADMINS is set).
logger = logging.getLogger("django.request")

# The API's own paths: anything under them that no endpoint matches answers JSON 404.
API_PREFIXES = ("api/", "v1/")


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _json_error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


def _json_not_allowed(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """ninja answers a method a path does not take with a plain-text 405: make it JSON, with
    the same ``Allow`` header."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if not isinstance(response, HttpResponseNotAllowed):
            return response
        allowed = response["Allow"]
        json = _json_error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path}; this path takes {allowed}.",
        )
        json["Allow"] = allowed
        return json

    return wrapper


@csrf_exempt  # like ninja's own views: a key, not a cookie, authenticates the API
def _no_such_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    return _json_error(
        404, "not_found", f"No API endpoint at {request.path}. The endpoints are at /api/v1/docs."
    )


class CopeNinjaAPI(NinjaAPI):
    """NinjaAPI whose every answer on the API's paths is JSON: its errors, a 405 from ninja's
    path view, and a 404 for a path under the API's prefixes that no endpoint matches."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for exc_class, handler in HANDLERS:
            self.add_exception_handler(exc_class, functools.partial(handler, self))

    def _get_urls(self) -> list[URLResolver | URLPattern]:
        urls = super()._get_urls()
        for url in urls:
            if isinstance(url, URLPattern):
                url.callback = _json_not_allowed(url.callback)
        prefixes = "|".join(re.escape(p) for p in API_PREFIXES)
        return [*urls, re_path(rf"^(?:{prefixes})(?P<rest>.*)$", _no_such_endpoint)]


def _error(
    api: NinjaAPI, request: HttpRequest, status: int, code: str, detail: str, **extra: Any
) -> HttpResponse:
    return api.create_response(request, {"detail": detail, "code": code, **extra}, status=status)


def _unprocessable(
    api: NinjaAPI,
    request: HttpRequest,
    code: str,
    detail: str,
    *,
    items: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> HttpResponse:
    """A 422 in its one documented shape (``UnprocessableOut``)."""
    return _error(api, request, 422, code, detail, items=items or [], errors=errors or [])


def _on_api_error(api: NinjaAPI, request: HttpRequest, exc: ApiError) -> HttpResponse:
    if exc.status == 422:
        return _unprocessable(api, request, exc.code, exc.detail, **exc.extra)
    return _error(api, request, exc.status, exc.code, exc.detail, **exc.extra)


def _on_unauthorized(api: NinjaAPI, request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _error(
        api,
        request,
        401,
        "unauthorized",
        "A valid API key is required: Authorization: Bearer <key>. Keys are created on the "
        "'API keys' page; a revoked key no longer works.",
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


def _on_expired(api: NinjaAPI, request: HttpRequest, exc: KeyExpired) -> HttpResponse:
    expired = exc.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    response = _error(
        api,
        request,
        401,
        "key_expired",
        f"This API key expired on {expired}. Create a new key on the 'API keys' page.",
        expired_at=exc.expires_at.isoformat(),
    )
    response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def _on_rate_limited(api: NinjaAPI, request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = _error(
        api,
        request,
        429,
        "rate_limited",
        f"Over this key's rate limit ({settings.COPE_API_RATE_LIMIT} requests per "
        f"{settings.COPE_API_RATE_WINDOW} s); retry after {exc.retry_after} s.",
    )
    response["Retry-After"] = str(exc.retry_after)
    return response


def _field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's errors as the documented ``FieldError``: where, what, which rule (the value
    sent is left out: it may be huge, or not printable)."""
    return [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors
    ]


def _content_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The schema errors about one content of ``contents``, as items naming its index."""
    items = []
    for error in errors:
        loc = list(error["loc"])
        if "contents" in loc[:-1] and isinstance(loc[loc.index("contents") + 1], int):
            items.append({"index": loc[loc.index("contents") + 1], "message": error["msg"]})
    return items


def _on_invalid(api: NinjaAPI, request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = _field_errors(list(exc.errors))
    where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return _unprocessable(
        api,
        request,
        "invalid",
        f"The request does not match the schema ({where}).",
        items=_content_errors(errors),
        errors=errors,
    )


def _on_http_error(api: NinjaAPI, request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja raises these itself: 400 for a body that is not JSON, above all.
    codes = {400: "malformed_request"}
    detail = str(exc)
    if exc.status_code == 400:
        detail = f"{detail}: the body must be JSON (Content-Type: application/json)."
    return _error(api, request, exc.status_code, codes.get(exc.status_code, "error"), detail)


def _on_suspicious(api: NinjaAPI, request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # A body over DATA_UPLOAD_MAX_MEMORY_SIZE, above all.
    return _error(api, request, 400, "bad_request", f"The request cannot be taken: {exc}")


def _on_not_found(api: NinjaAPI, request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(api, request, 404, "not_found", str(exc) or "Not found.")


def _on_unexpected(api: NinjaAPI, request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.error(
        "Internal Server Error: %s",
        request.path,
        exc_info=exc,
        extra={"status_code": 500, "request": request},
    )
    return _error(
        api,
        request,
        500,
        "server_error",
        "An unexpected error on the server; it has been logged. Nothing was stored.",
    )


# ninja picks the handler of the nearest class in the exception's MRO: Exception is the rest.
HANDLERS: list[tuple[type[Exception], Callable[..., HttpResponse]]] = [
    (ApiError, _on_api_error),
    (AuthenticationError, _on_unauthorized),
    (KeyExpired, _on_expired),
    (RateLimited, _on_rate_limited),
    (ValidationError, _on_invalid),
    (HttpError, _on_http_error),
    (SuspiciousOperation, _on_suspicious),
    (Http404, _on_not_found),
    (Exception, _on_unexpected),
]
