"""The labeling API (django-ninja): ``/api/v1/`` with its OpenAPI schema and docs page, and
``POST /v1/label`` in the request shape of Zentropi's public API.

Every call needs an API key (``Authorization: Bearer cope_…``) with the right scope: ``read``
to list policies and fetch versions, ``label`` to label under a policy's version,
``label_text`` to label under a text sent with the request (``policy_text``,
``criteria_text``): that text was never reviewed, so the scope is off unless an admin grants
it, and every such answer says ``"unreviewed": true`` with a warning.

Every error is JSON ``{"detail": "...", "code": "..."}``: 400 a body that is not JSON, 401 no
valid key, 403 wrong scope, 404 unknown policy, version or path, 405 a method the path does not
take (with ``Allow``), 409 a version that is not finalized (unless ``allow_draft`` is true), 422
a request the schema or the model cannot take (``items`` names the contents at fault,
``errors`` the fields), 429 over the key's rate limit (with ``Retry-After``), 500 an unexpected
error (logged), 502 a model worker that failed, 503 no model worker answered.

Labels are computed like every other label: on the model workers, through the broker (the
``gpu_live`` queue, ahead of bulk jobs); nothing is stored.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db.models import Max, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import URLPattern, URLResolver, re_path
from ninja import Field, NinjaAPI, Path, Router, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.pagination import LimitOffsetPagination, paginate
from ninja.security import HttpBearer
from pydantic import AfterValidator, ConfigDict, StringConstraints

from labeling.api import keys as api_keys
from labeling.api import live
from labeling.jobs.evaluation import deciding_job
from labeling.models import ApiKey, Job
from policies.models import SLUG_MAX_LENGTH, Policy, Version

logger = logging.getLogger(__name__)

# Every integer the API takes is bounded, so none reaches the database past what a column
# holds (a 2^63 offset was a 500): version numbers fit PostgreSQL's integer, pages a sane size.
MAX_NUMBER = 2**31 - 1
MAX_PAGE = 1000
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


class KeyAuth(HttpBearer):
    """A valid, unrevoked key of an active user; counts the request against its rate limit."""

    openapi_description = "An API key from CoPE Studio (Your API keys): Bearer cope_…"

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        api_key = api_keys.authenticate(token)
        if api_key is None:
            return None
        retry_after = api_keys.rate_limit(api_key)
        if retry_after is not None:
            raise RateLimited(retry_after)
        return api_key


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


def _no_such_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    return _json_error(
        404, "not_found", f"No API endpoint at {request.path}. The endpoints are at /api/v1/docs."
    )


class CopeNinjaAPI(NinjaAPI):
    """NinjaAPI whose every answer on the API's paths is JSON: a 405 from ninja's path view,
    and a 404 for a path under the API's prefixes that no endpoint matches."""

    def _get_urls(self) -> list[URLResolver | URLPattern]:
        urls = super()._get_urls()
        for url in urls:
            if isinstance(url, URLPattern):
                url.callback = _json_not_allowed(url.callback)
        prefixes = "|".join(re.escape(p) for p in API_PREFIXES)
        not_found = _no_such_endpoint
        not_found.csrf_exempt = True  # type: ignore[attr-defined]
        return [*urls, re_path(rf"^(?:{prefixes})(?P<rest>.*)$", not_found)]


api = CopeNinjaAPI(
    title="CoPE Studio API",
    version="1",
    description=__doc__ or "",
    urls_namespace="api",
    auth=KeyAuth(),
    docs_url="/api/v1/docs",
    openapi_url="/api/v1/openapi.json",
)


def _error(request: HttpRequest, status: int, code: str, detail: str, **extra: Any) -> Any:
    return api.create_response(request, {"detail": detail, "code": code, **extra}, status=status)


def _unprocessable(
    request: HttpRequest,
    code: str,
    detail: str,
    *,
    items: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> HttpResponse:
    """A 422 in its one documented shape (``UnprocessableOut``)."""
    response: HttpResponse = _error(
        request, 422, code, detail, items=items or [], errors=errors or []
    )
    return response


@api.exception_handler(ApiError)
def _on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    if exc.status == 422:
        return _unprocessable(request, exc.code, exc.detail, **exc.extra)
    response: HttpResponse = _error(request, exc.status, exc.code, exc.detail, **exc.extra)
    return response


@api.exception_handler(AuthenticationError)
def _on_unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response: HttpResponse = _error(
        request,
        401,
        "unauthorized",
        "A valid API key is required: Authorization: Bearer <key>. Keys are created on the "
        "'API keys' page; a revoked key no longer works.",
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(RateLimited)
def _on_rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response: HttpResponse = _error(
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


@api.exception_handler(ValidationError)
def _on_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = _field_errors(list(exc.errors))
    where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return _unprocessable(
        request,
        "invalid",
        f"The request does not match the schema ({where}).",
        items=_content_errors(errors),
        errors=errors,
    )


@api.exception_handler(HttpError)
def _on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja raises these itself: 400 for a body that is not JSON, above all.
    codes = {400: "malformed_request"}
    detail = str(exc)
    if exc.status_code == 400:
        detail = f"{detail}: the body must be JSON (Content-Type: application/json)."
    response: HttpResponse = _error(
        request, exc.status_code, codes.get(exc.status_code, "error"), detail
    )
    return response


@api.exception_handler(SuspiciousOperation)
def _on_suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # A body over DATA_UPLOAD_MAX_MEMORY_SIZE, above all.
    response: HttpResponse = _error(
        request, 400, "bad_request", f"The request cannot be taken: {exc}"
    )
    return response


@api.exception_handler(Http404)
def _on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    response: HttpResponse = _error(request, 404, "not_found", str(exc) or "Not found.")
    return response


@api.exception_handler(Exception)
def _on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unexpected error on %s %s", request.method, request.path, exc_info=exc)
    response: HttpResponse = _error(
        request,
        500,
        "server_error",
        "An unexpected error on the server; it has been logged. Nothing was stored.",
    )
    return response


# Schemas ------------------------------------------------------------------------------------


def _utf8(value: str | None) -> str | None:
    """Refuse text that cannot be sent on as UTF-8 (a lone surrogate, from a ``\\udxxx`` JSON
    escape): the model worker could not read it."""
    if value is None:
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"not valid Unicode text: a lone surrogate (U+{ord(value[exc.start]):04X}) at "
            f"character {exc.start + 1}"
        ) from None
    return value


# Text that is looked up in the database: printable in UTF-8 and free of NUL, which PostgreSQL
# cannot take in a query. Any other slug is simply not found (404).
SlugText = Annotated[
    str, StringConstraints(min_length=1, max_length=SLUG_MAX_LENGTH, pattern=r"^[^\x00]+$")
]
# A policy text sent with the request: anything the model worker can read.
PolicyText = Annotated[str, AfterValidator(_utf8)]
Number = Annotated[int, Field(ge=1, le=MAX_NUMBER)]
SLUG_PATH = Path(
    ..., min_length=1, max_length=SLUG_MAX_LENGTH, pattern=r"^[^\x00]+$", description="A slug"
)
NUMBER_PATH = Path(..., ge=1, le=MAX_NUMBER, description="A version number")


class ErrorOut(Schema):
    detail: str
    code: str


class ItemError(Schema):
    index: int = Field(description="The content's place in `contents` (0-based)")
    message: str


class FieldError(Schema):
    loc: list[str | int] = Field(
        description="Where: ['body', 'body', 'contents', 3], ['query', 'limit']"
    )
    msg: str
    type: str


class UnprocessableOut(ErrorOut):
    """Every 422 has this shape: ``items`` for the contents at fault (by index), ``errors``
    for the fields that do not match the schema; either may be empty."""

    items: list[ItemError] = Field(description="The contents at fault, by index")
    errors: list[FieldError] = Field(description="The fields that do not match the schema")


class PolicyOut(Schema):
    slug: str
    name: str
    description: str
    agreement_threshold: float
    min_sample_size: int
    latest_version: int | None = Field(None, description="Number of the newest version")
    finalized_version: int | None = Field(
        None, description="Number of the newest finalized version (labels use it by default)"
    )


class VersionSummary(Schema):
    number: int
    finalized: bool
    finalized_at: datetime | None
    created_at: datetime
    change_note: str
    has_twin: bool


class FiguresOut(Schema):
    job_id: int
    deciding: bool = Field(
        True,
        description="Always true: the API shows only the version's deciding job (its latest "
        "succeeded twin job on the evaluation set at the minimum sample), the one figure every "
        "page and finalize read",
    )
    sample_set: str
    items: int
    backend: str
    model_id: str
    weak_backend: bool = Field(description="True for the embedding baseline (not CoPE)")
    agreement: float | None = Field(description="p_o: share of items labeled alike by A and B")
    kappa: float | None
    ci_low: float | None = Field(description="95% Wilson interval of the agreement")
    ci_high: float | None
    positive_rate_a: float | None
    positive_rate_b: float | None
    labeled_both: int
    excluded: int
    finished_at: datetime | None


class VersionOut(VersionSummary):
    policy: str
    text: str
    twin_text: str
    figures: FiguresOut | None = Field(
        description="The version's deciding job's figures; null while no job decides"
    )


class LabelIn(Schema):
    """What to label (`content`, or `contents`, or both: `content` comes last) and under what:
    exactly one of `policy` (a slug: the `label` scope) or `policy_text` (an ad-hoc, unreviewed
    text: the `label_text` scope). Both, or neither, is a 422."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["policy"],
                    "properties": {"policy": {"type": "string"}, "policy_text": {"type": "null"}},
                },
                {
                    "required": ["policy_text"],
                    "properties": {"policy_text": {"type": "string"}, "policy": {"type": "null"}},
                },
            ]
        }
    )

    contents: list[str] | None = Field(None, description="Contents to label (or `content`)")
    content: str | None = Field(None, description="One content to label")
    policy: SlugText | None = Field(None, description="Policy slug; or give `policy_text`")
    version: Number | None = Field(None, description="Version number; default: latest finalized")
    allow_draft: bool = Field(False, description="Allow a version that is not finalized")
    policy_text: PolicyText | None = Field(
        None,
        description="Ad-hoc policy text instead of a slug. It has not been reviewed or "
        "finalized: needs the `label_text` scope, and the answer says `unreviewed: true`.",
    )


class Timing(Schema):
    total_ms: float = Field(description="This request, as the server handled it")
    round_trip_ms: float = Field(description="Web → broker → model worker → web")
    model_ms: float = Field(description="The model's scoring time on the worker")


class LabelResult(Schema):
    index: int
    label: int | None = Field(description="1: the content meets the policy; 0: it does not")
    p1: float | None = Field(description="The model's probability of 1")
    error: str | None = None
    policy: str | None
    version: int | None
    model_id: str
    timing: Timing


UNREVIEWED = Field(
    description="True when the labels come from a text that was not finalized in this studio: "
    "an ad-hoc `policy_text`/`criteria_text`, or a draft version (`allow_draft`)"
)
WARNING = Field(description="Why the labels are unreviewed, when they are; null otherwise")


class LabelOut(Schema):
    results: list[LabelResult]
    policy: str | None
    version: int | None
    unreviewed: bool = UNREVIEWED
    warning: str | None = WARNING
    backend: str
    model_id: str
    model_revision: str
    weak_backend: bool
    timing: Timing


class ZentropiIn(Schema):
    """`content_text` with exactly one of `criteria_text` (an ad-hoc, unreviewed text: the
    `label_text` scope) or `labeler_id` (a policy slug: the `label` scope)."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["criteria_text"],
                    "properties": {
                        "criteria_text": {"type": "string"},
                        "labeler_id": {"type": "null"},
                    },
                },
                {
                    "required": ["labeler_id"],
                    "properties": {
                        "labeler_id": {"type": "string"},
                        "criteria_text": {"type": "null"},
                    },
                },
            ]
        }
    )

    content_text: str
    criteria_text: PolicyText | None = Field(
        None, description="Ad-hoc policy text (unreviewed: needs the `label_text` scope)"
    )
    labeler_id: SlugText | None = Field(None, description="A policy slug")
    labeler_version_id: str | None = Field(
        "latest",
        max_length=20,
        description="'latest' (the latest finalized version) or a version number in ASCII "
        "digits (1 to 2147483647, optionally after a 'v'); anything else is a 422",
    )
    model: str | None = Field(None, description="Accepted and ignored: the workers' model is used")
    allow_draft: bool = False


class ZentropiOut(Schema):
    label: str = Field(description='"1" or "0"')
    confidence: float = Field(description="Probability of the label given (0.5 to 1.0)")
    compute_time: float = Field(description="Seconds this request took")
    unreviewed: bool = UNREVIEWED
    warning: str | None = WARNING


class BoundedPagination(LimitOffsetPagination):
    class Input(Schema):
        limit: int = Field(100, ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE}")
        offset: int = Field(0, ge=0, le=MAX_NUMBER, description=f"At most {MAX_NUMBER}")


# Every status each kind of endpoint answers, with its shape.
READ_ERRORS: dict[int, type[Schema]] = {
    401: ErrorOut,
    403: ErrorOut,
    422: UnprocessableOut,
    429: ErrorOut,
    500: ErrorOut,
}
LOOKUP_ERRORS: dict[int, type[Schema]] = {**READ_ERRORS, 404: ErrorOut}
LABEL_ERRORS: dict[int, type[Schema]] = {
    **LOOKUP_ERRORS,
    400: ErrorOut,
    409: ErrorOut,
    502: ErrorOut,
    503: ErrorOut,
}


# Lookups ------------------------------------------------------------------------------------


def _require(request: HttpRequest, scope: str) -> ApiKey:
    key: ApiKey = request.auth  # type: ignore[attr-defined]
    if not api_keys.has_scope(key, scope):
        why = (
            " It labels under a text that was never reviewed or finalized, so an admin grants "
            "it on a key of its own; to label under a finalized version, send `policy` (a slug)."
            if scope == api_keys.LABEL_TEXT
            else ""
        )
        raise ApiError(
            403,
            "forbidden",
            f"This API key does not have the '{scope}' scope (or its "
            f"owner's role no longer allows it).{why}",
        )
    return key


def _policies() -> QuerySet[Policy]:
    return Policy.objects.annotate(
        latest_version=Max("versions__number"),
        finalized_version=Max("versions__number", filter=Q(versions__finalized_at__isnull=False)),
    ).order_by("name")


def _policy(slug: str) -> Policy:
    policy = _policies().filter(slug=slug).first()
    if policy is None:
        raise ApiError(404, "not_found", f"No policy with the slug {slug!r}.")
    return policy


def _version(policy: Policy, number: int | None, *, allow_draft: bool) -> Version:
    """The named version, or the latest finalized one; 409 for a draft unless allowed."""
    if number is None:
        finalized = getattr(policy, "finalized_version", None)
        if finalized is None:
            raise ApiError(
                409,
                "not_finalized",
                f"Policy {policy.slug!r} has no finalized version yet. Name a version and set "
                "allow_draft=true to label with a draft.",
            )
        number = finalized
    version = Version.objects.filter(policy=policy, number=number).first()
    if version is None:
        raise ApiError(404, "not_found", f"Policy {policy.slug!r} has no version {number}.")
    if not version.is_finalized and not allow_draft:
        raise ApiError(
            409,
            "not_finalized",
            f"Version {number} of {policy.slug!r} is not finalized; set allow_draft=true to "
            "label with it anyway.",
        )
    return version


def _label_version(slug: str, number: int | None, *, allow_draft: bool) -> Version:
    """What a label request names, with its policy: one query when it exists (the label paths
    answer at model speed), the same errors as ``_policy`` then ``_version`` when not."""
    versions = Version.objects.select_related("policy").filter(policy__slug=slug)
    if number is None:
        versions = versions.filter(finalized_at__isnull=False).order_by("-number")
    else:
        versions = versions.filter(number=number)
    version = versions.first()
    if version is None or (not version.is_finalized and not allow_draft):
        return _version(_policy(slug), number, allow_draft=allow_draft)  # raises the right error
    return version


def _figures(job: Job | None) -> FiguresOut | None:
    """The deciding job's figures, or None while no job decides."""
    if job is None:
        return None
    stats = job.stats or {}
    return FiguresOut(
        job_id=job.pk,
        deciding=True,
        sample_set=job.sample_set.name,
        items=job.item_count,
        backend=job.backend,
        model_id=job.model_id,
        weak_backend=job.weak_backend,
        agreement=stats.get("p_o"),
        kappa=stats.get("kappa"),
        ci_low=stats.get("ci_low"),
        ci_high=stats.get("ci_high"),
        positive_rate_a=stats.get("positive_rate_a"),
        positive_rate_b=stats.get("positive_rate_b"),
        labeled_both=int(stats.get("n") or 0),
        excluded=int(stats.get("excluded_count") or 0),
        finished_at=job.finished_at,
    )


def _summary(version: Version) -> dict[str, Any]:
    return {
        "number": version.number,
        "finalized": version.is_finalized,
        "finalized_at": version.finalized_at,
        "created_at": version.created_at,
        "change_note": version.change_note,
        "has_twin": version.has_twin,
    }


# Reading ------------------------------------------------------------------------------------

v1 = Router(tags=["policies"])


@v1.get("/policies", response={200: list[PolicyOut], **READ_ERRORS}, summary="List policies")
@paginate(BoundedPagination)
def list_policies(request: HttpRequest) -> Any:
    _require(request, api_keys.READ)
    return _policies()


@v1.get("/policies/{slug}", response={200: PolicyOut, **LOOKUP_ERRORS}, summary="One policy")
def get_policy(request: HttpRequest, slug: str = SLUG_PATH) -> Any:
    _require(request, api_keys.READ)
    return _policy(slug)


@v1.get(
    "/policies/{slug}/versions",
    response={200: list[VersionSummary], **LOOKUP_ERRORS},
    summary="A policy's versions, newest first",
)
@paginate(BoundedPagination)
def list_versions(request: HttpRequest, slug: str = SLUG_PATH) -> Any:
    _require(request, api_keys.READ)
    policy = _policy(slug)
    versions = Version.objects.filter(policy=policy).order_by("-number")
    return [_summary(v) for v in versions.defer("text", "twin_text", "twin_prompt")]


@v1.get(
    "/policies/{slug}/versions/{number}",
    response={200: VersionOut, **LOOKUP_ERRORS},
    summary="A version's text, twin and agreement figures",
)
def get_version(request: HttpRequest, slug: str = SLUG_PATH, number: int = NUMBER_PATH) -> Any:
    _require(request, api_keys.READ)
    policy = _policy(slug)
    version = Version.objects.filter(policy=policy, number=number).first()
    if version is None:
        raise ApiError(404, "not_found", f"Policy {slug!r} has no version {number}.")
    job = deciding_job(version)
    if job is not None:
        job = Job.objects.select_related("sample_set").get(pk=job.pk)
    return {
        **_summary(version),
        "policy": policy.slug,
        "text": version.text,
        "twin_text": version.twin_text,
        "figures": _figures(job),
    }


# Labeling -----------------------------------------------------------------------------------

AD_HOC_WARNING = (
    "Labeled under a text sent with the request: it has not been reviewed or finalized in this "
    "studio, so no agreement figure stands behind these labels."
)


def _draft_warning(version: Version) -> str | None:
    if version.is_finalized:
        return None
    return (
        f"Labeled under version {version.number} of {version.policy.slug!r}, a draft "
        "(allow_draft): it has not been finalized, so no agreement gate stands behind these "
        "labels."
    )


def _unencodable(contents: list[str]) -> dict[int, str]:
    """Contents the model worker could not read (a lone surrogate), by index, with why."""
    errors: dict[int, str] = {}
    for index, content in enumerate(contents):
        try:
            _utf8(content)
        except ValueError as exc:
            errors[index] = f"Content {index}: {exc}. Nothing was labeled."
    return errors


def _label(
    *,
    started: float,
    contents: list[str],
    policy_text: str,
    policy: str | None,
    version: int | None,
    warning: str | None,
) -> dict[str, Any]:
    limit = int(settings.COPE_API_MAX_BATCH)
    if not contents:
        raise ApiError(422, "no_content", "Give `content` or a non-empty `contents` list.")
    if len(contents) > limit:
        raise ApiError(
            422,
            "batch_too_large",
            f"{len(contents)} contents in one request; the limit is {limit} (COPE_API_MAX_BATCH).",
        )
    unreadable = _unencodable(contents)
    if unreadable:
        raise ApiError(
            422,
            "unencodable",
            f"{len(unreadable)} content(s) are not valid Unicode text (a lone surrogate); "
            "nothing was labeled. Fix or leave out the items listed.",
            items=[{"index": i, "message": m} for i, m in sorted(unreadable.items())],
        )
    refused = live.budget_errors(policy_text, contents)
    if refused:  # refused before anything is sent
        raise _too_long(refused)
    try:
        answer = live.Sent(policy=policy_text, contents=contents, refused={}).answer()
    except live.NoAnswer as exc:
        raise ApiError(503, "no_worker", str(exc)) from exc
    except live.LiveError as exc:
        raise ApiError(502, "worker_error", str(exc)) from exc
    too_long = {i: item.error for i, item in enumerate(answer.items) if item.too_long}
    if too_long:
        raise _too_long(too_long)
    worker = answer.worker
    timing = {
        "total_ms": round((time.perf_counter() - started) * 1000, 2),
        "round_trip_ms": round(answer.seconds * 1000, 2),
        "model_ms": round(answer.model_seconds * 1000, 2),
    }
    model_id = worker.model_id if worker else ""
    return {
        "results": [
            {
                "index": i,
                "label": item.label,
                "p1": item.p1,
                "error": item.error or None,
                "policy": policy,
                "version": version,
                "model_id": model_id,
                "timing": timing,
            }
            for i, item in enumerate(answer.items)
        ],
        "policy": policy,
        "version": version,
        "unreviewed": warning is not None,
        "warning": warning,
        "backend": worker.backend if worker else "",
        "model_id": model_id,
        "model_revision": worker.model_revision if worker else "",
        "weak_backend": bool(worker and (worker.weak or worker.backend == "embedding")),
        "timing": timing,
    }


def _too_long(errors: dict[int, str]) -> ApiError:
    items = [{"index": i, "message": m} for i, m in sorted(errors.items())]
    return ApiError(
        422,
        "too_long",
        f"{len(items)} content(s) over CoPE's token budget; nothing is truncated, so nothing "
        "was labeled. Shorten or leave out the items listed.",
        items=items,
    )


labeling = Router(tags=["labeling"])


@labeling.post(
    "/label", response={200: LabelOut, **LABEL_ERRORS}, summary="Label one content or a batch"
)
def label(request: HttpRequest, body: LabelIn) -> Any:
    """Label `content` (or up to `COPE_API_MAX_BATCH` `contents`) under exactly one of:
    `policy`, a slug (its latest finalized version, or `version`; a draft only with
    `allow_draft=true`), with the `label` scope; or `policy_text`, an ad-hoc text that was never
    reviewed, with the `label_text` scope: its answer says `unreviewed: true` and why. Both or
    neither is a 422 (`code: invalid`)."""
    started = time.perf_counter()
    _require(request, api_keys.LABEL_TEXT if body.policy_text is not None else api_keys.LABEL)
    contents = list(body.contents or []) + ([body.content] if body.content is not None else [])
    if body.policy_text is not None and body.policy is not None:
        raise ApiError(422, "invalid", "Give `policy` or `policy_text`, not both.")
    if body.policy_text is not None:
        if not body.policy_text.strip():
            raise ApiError(422, "invalid", "`policy_text` is empty.")
        return _label(
            started=started,
            contents=contents,
            policy_text=body.policy_text,
            policy=None,
            version=None,
            warning=AD_HOC_WARNING,
        )
    if body.policy is None:
        raise ApiError(422, "invalid", "Give `policy` (a slug) or `policy_text`.")
    version = _label_version(body.policy, body.version, allow_draft=body.allow_draft)
    return _label(
        started=started,
        contents=contents,
        policy_text=version.text,
        policy=version.policy.slug,
        version=version.number,
        warning=_draft_warning(version),
    )


compat = Router(tags=["compatibility"])
VERSION_ID = re.compile(r"v?([0-9]{1,10})", re.ASCII)


def _version_number(wanted: str | None) -> int | None:
    """``labeler_version_id``: None for 'latest', else its number in ASCII digits (``isdigit``
    takes '²', which ``int`` does not)."""
    wanted = (wanted or "latest").strip().lower()
    if wanted in ("", "latest"):
        return None
    match = VERSION_ID.fullmatch(wanted)
    if match is None or not 1 <= int(match.group(1)) <= MAX_NUMBER:
        raise ApiError(
            422,
            "invalid",
            "labeler_version_id is 'latest' or a version number in ASCII digits "
            f"(1 to {MAX_NUMBER}), e.g. '3' or 'v3'.",
        )
    return int(match.group(1))


@compat.post(
    "/label",
    response={200: ZentropiOut, **LABEL_ERRORS},
    summary="Label one content (Zentropi's request and response shape)",
)
def zentropi_label(request: HttpRequest, body: ZentropiIn) -> Any:
    """The request shape of Zentropi's `POST /v1/label`: `content_text` with exactly one of
    `criteria_text` (an ad-hoc text, never reviewed: the `label_text` scope, and the answer
    says `unreviewed: true`) or `labeler_id` (a policy slug here: the `label` scope) and
    `labeler_version_id` ('latest' = latest finalized version, or a version number). Answers
    `label` ("0"/"1"), `confidence` and `compute_time`. Both or neither is a 422."""
    started = time.perf_counter()
    ad_hoc = body.criteria_text is not None
    _require(request, api_keys.LABEL_TEXT if ad_hoc else api_keys.LABEL)
    if ad_hoc == (body.labeler_id is not None):
        raise ApiError(422, "invalid", "Exactly one of criteria_text or labeler_id is required.")
    if body.criteria_text is not None:
        policy_text, slug, number = body.criteria_text, None, None
        warning: str | None = AD_HOC_WARNING
    else:
        slug = str(body.labeler_id)
        version = _label_version(
            slug, _version_number(body.labeler_version_id), allow_draft=body.allow_draft
        )
        policy_text, slug, number = version.text, version.policy.slug, version.number
        warning = _draft_warning(version)
    out = _label(
        started=started,
        contents=[body.content_text],
        policy_text=policy_text,
        policy=slug,
        version=number,
        warning=warning,
    )
    result = out["results"][0]
    if result["label"] is None:
        raise ApiError(502, "worker_error", result["error"] or "The worker gave no label.")
    p1 = float(result["p1"])
    return {
        "label": str(result["label"]),
        "confidence": max(p1, 1.0 - p1),
        "compute_time": round(time.perf_counter() - started, 4),
        "unreviewed": out["unreviewed"],
        "warning": out["warning"],
    }


api.add_router("/api/v1", v1)
api.add_router("/api/v1", labeling)
api.add_router("/v1", compat)
