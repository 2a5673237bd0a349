"""The labeling API (django-ninja): ``/api/v1/`` with its OpenAPI schema and docs page, and
``POST /v1/label`` in the request shape of Zentropi's public API.

Every call needs an API key (``Authorization: Bearer cope_…``) with the right scope: ``read``
to list policies and fetch versions, ``label`` to label. Errors are JSON
``{"detail": "...", "code": "..."}``: 401 no valid key, 403 wrong scope, 404 unknown policy or
version, 409 a version that is not finalized (unless ``allow_draft`` is true), 422 content over
the token budget (``items`` says which) or a batch over ``COPE_API_MAX_BATCH``, 429 over the
key's rate limit (with ``Retry-After``), 503 no model worker answered.

Labels are computed like every other label: on the model workers, through the broker (the
``gpu_live`` queue, ahead of bulk jobs); nothing is stored.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Max, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Router, Schema
from ninja.errors import AuthenticationError, ValidationError
from ninja.pagination import LimitOffsetPagination, paginate
from ninja.security import HttpBearer

from labeling.api import keys as api_keys
from labeling.api import live
from labeling.jobs.evaluation import deciding_job
from labeling.models import ApiKey, Job
from policies.models import Policy, Version


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


api = NinjaAPI(
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


@api.exception_handler(ApiError)
def _on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
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


@api.exception_handler(ValidationError)
def _on_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    response: HttpResponse = _error(
        request, 422, "invalid", "The request does not match the schema.", errors=exc.errors
    )
    return response


# Schemas ------------------------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str
    code: str


class TooLongItem(Schema):
    index: int
    message: str


class TooLongOut(ErrorOut):
    items: list[TooLongItem]


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
    contents: list[str] | None = Field(None, description="Contents to label (or `content`)")
    content: str | None = Field(None, description="One content to label")
    policy: str | None = Field(None, description="Policy slug; or give `policy_text`")
    version: int | None = Field(None, description="Version number; default: latest finalized")
    allow_draft: bool = Field(False, description="Allow a version that is not finalized")
    policy_text: str | None = Field(None, description="Ad-hoc policy text instead of a slug")


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


class LabelOut(Schema):
    results: list[LabelResult]
    policy: str | None
    version: int | None
    backend: str
    model_id: str
    model_revision: str
    weak_backend: bool
    timing: Timing


class ZentropiIn(Schema):
    content_text: str
    criteria_text: str | None = None
    labeler_id: str | None = Field(None, description="A policy slug")
    labeler_version_id: str | None = Field(
        "latest", description="'latest' (the latest finalized version) or a version number"
    )
    model: str | None = Field(None, description="Accepted and ignored: the workers' model is used")
    allow_draft: bool = False


class ZentropiOut(Schema):
    label: str = Field(description='"1" or "0"')
    confidence: float = Field(description="Probability of the label given (0.5 to 1.0)")
    compute_time: float = Field(description="Seconds this request took")


ERRORS: dict[int, type[Schema]] = {
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    429: ErrorOut,
}
LABEL_ERRORS: dict[int, type[Schema]] = {**ERRORS, 422: TooLongOut, 502: ErrorOut, 503: ErrorOut}


# Lookups ------------------------------------------------------------------------------------


def _require(request: HttpRequest, scope: str) -> ApiKey:
    key: ApiKey = request.auth  # type: ignore[attr-defined]
    if not api_keys.has_scope(key, scope):
        raise ApiError(
            403,
            "forbidden",
            f"This API key does not have the '{scope}' scope (or its "
            "owner's role no longer allows it).",
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


@v1.get("/policies", response={200: list[PolicyOut], **ERRORS}, summary="List policies")
@paginate(LimitOffsetPagination)
def list_policies(request: HttpRequest) -> Any:
    _require(request, api_keys.READ)
    return _policies()


@v1.get("/policies/{slug}", response={200: PolicyOut, **ERRORS}, summary="One policy")
def get_policy(request: HttpRequest, slug: str) -> Any:
    _require(request, api_keys.READ)
    return _policy(slug)


@v1.get(
    "/policies/{slug}/versions",
    response={200: list[VersionSummary], **ERRORS},
    summary="A policy's versions, newest first",
)
@paginate(LimitOffsetPagination)
def list_versions(request: HttpRequest, slug: str) -> Any:
    _require(request, api_keys.READ)
    policy = _policy(slug)
    versions = Version.objects.filter(policy=policy).order_by("-number")
    return [_summary(v) for v in versions.defer("text", "twin_text", "twin_prompt")]


@v1.get(
    "/policies/{slug}/versions/{number}",
    response={200: VersionOut, **ERRORS},
    summary="A version's text, twin and agreement figures",
)
def get_version(request: HttpRequest, slug: str, number: int) -> Any:
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


def _label(
    *,
    started: float,
    contents: list[str],
    policy_text: str,
    policy: str | None,
    version: int | None,
) -> dict[str, Any]:
    limit = int(settings.COPE_API_MAX_BATCH)
    if not contents:
        raise ApiError(
            422, "no_content", "Give `content` or a non-empty `contents` list.", items=[]
        )
    if len(contents) > limit:
        raise ApiError(
            422,
            "batch_too_large",
            f"{len(contents)} contents in one request; the limit is {limit} (COPE_API_MAX_BATCH).",
            items=[],
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
    """Label `content` (or up to `COPE_API_MAX_BATCH` `contents`) under a policy: by slug
    (its latest finalized version, or `version` — a draft only with `allow_draft=true`), or
    under ad-hoc `policy_text`."""
    started = time.perf_counter()
    _require(request, api_keys.LABEL)
    contents = list(body.contents or []) + ([body.content] if body.content is not None else [])
    if body.policy_text is not None and body.policy is not None:
        raise ApiError(422, "invalid", "Give `policy` or `policy_text`, not both.", items=[])
    if body.policy_text is not None:
        if not body.policy_text.strip():
            raise ApiError(422, "invalid", "`policy_text` is empty.", items=[])
        return _label(
            started=started,
            contents=contents,
            policy_text=body.policy_text,
            policy=None,
            version=None,
        )
    if body.policy is None:
        raise ApiError(422, "invalid", "Give `policy` (a slug) or `policy_text`.", items=[])
    version = _label_version(body.policy, body.version, allow_draft=body.allow_draft)
    return _label(
        started=started,
        contents=contents,
        policy_text=version.text,
        policy=version.policy.slug,
        version=version.number,
    )


compat = Router(tags=["compatibility"])


@compat.post(
    "/label",
    response={200: ZentropiOut, **LABEL_ERRORS},
    summary="Label one content (Zentropi's request and response shape)",
)
def zentropi_label(request: HttpRequest, body: ZentropiIn) -> Any:
    """The request shape of Zentropi's `POST /v1/label`: `content_text` with `criteria_text`, or
    with `labeler_id` (a policy slug here) and `labeler_version_id` ('latest' = latest
    finalized version, or a version number). Answers `label` ("0"/"1"), `confidence` and
    `compute_time`."""
    started = time.perf_counter()
    _require(request, api_keys.LABEL)
    if (body.criteria_text is None) == (body.labeler_id is None):
        raise ApiError(
            422, "invalid", "Exactly one of criteria_text or labeler_id is required.", items=[]
        )
    if body.criteria_text is not None:
        policy_text, slug, number = body.criteria_text, None, None
    else:
        slug = str(body.labeler_id)
        wanted = (body.labeler_version_id or "latest").strip().lower()
        if wanted in ("", "latest"):
            number = None
        elif wanted.lstrip("v").isdigit():
            number = int(wanted.lstrip("v"))
        else:
            raise ApiError(
                422, "invalid", "labeler_version_id is 'latest' or a version number.", items=[]
            )
        version = _label_version(slug, number, allow_draft=body.allow_draft)
        policy_text, slug, number = version.text, version.policy.slug, version.number
    out = _label(
        started=started,
        contents=[body.content_text],
        policy_text=policy_text,
        policy=slug,
        version=number,
    )
    result = out["results"][0]
    if result["label"] is None:
        raise ApiError(502, "worker_error", result["error"] or "The worker gave no label.")
    p1 = float(result["p1"])
    return {
        "label": str(result["label"]),
        "confidence": max(p1, 1.0 - p1),
        "compute_time": round(time.perf_counter() - started, 4),
    }


api.add_router("/api/v1", v1)
api.add_router("/api/v1", labeling)
api.add_router("/v1", compat)
