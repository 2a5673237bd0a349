"""The labeling API (django-ninja): ``/api/v1/`` with its OpenAPI schema and docs page, and
``POST /v1/label`` in the request shape of Zentropi's public API.

Every call needs an API key (``Authorization: Bearer cope_…``) with the right scope: ``read``
to list policies and fetch versions, ``label`` to label under a policy's version,
``label_text`` to label under a text sent with the request (``policy_text``,
``criteria_text``): that text was never reviewed, so the scope is off unless an admin grants
it, and every such answer says ``"unreviewed": true`` with a warning.

A key expires (its date is on the API keys page) and may be limited to chosen policies: the
policy list shows only those, and any other policy answers 403.

Every error is JSON ``{"detail": "...", "code": "..."}``: 400 a body that is not JSON, 401 no
valid key (``key_expired`` for a key past its expiry date), 403 wrong scope or a policy outside
the key's policies, 404 unknown policy, version or path, 405 a method the path does not
take (with ``Allow``), 409 a version that is not finalized (unless ``allow_draft`` is true), 422
a request the schema or the model cannot take (``items`` names the contents at fault,
``errors`` the fields), 429 over the key's rate limit (with ``Retry-After``), 500 an unexpected
error (logged), 502 a model worker that failed, 503 no model worker answered.

Labels are computed like every other label: on the model workers, through the broker (the
``gpu_live`` queue, ahead of bulk jobs); nothing is stored.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from django.conf import settings
from django.db.models import Max, Q, QuerySet
from django.http import HttpRequest
from ninja import Router
from ninja.pagination import paginate
from ninja.security import HttpBearer

from labeling.api import keys as api_keys
from labeling.api import live
from labeling.api.errors import ApiError, CopeNinjaAPI, RateLimited
from labeling.api.schemas import (
    LABEL_ERRORS,
    LOOKUP_ERRORS,
    MAX_EXPLAIN_SCORES,
    MAX_NUMBER,
    NUMBER_PATH,
    READ_ERRORS,
    SLUG_PATH,
    BoundedPagination,
    FiguresOut,
    LabelIn,
    LabelOut,
    PolicyOut,
    VersionOut,
    VersionSummary,
    ZentropiIn,
    ZentropiOut,
    utf8,
)
from labeling.jobs.evaluation import deciding_job
from labeling.models import ApiKey, Job
from policies.models import Policy, Version
from worker.clauses import Clause, parse_clauses, remove_clause


class KeyAuth(HttpBearer):
    """A valid, unrevoked, unexpired key of an active user; counts the request against its rate
    limit (an expired key raises ``KeyExpired`` before it is counted)."""

    openapi_description = "An API key from CoPE Studio (Your API keys): Bearer cope_…"

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        api_key = api_keys.authenticate(token)
        if api_key is None:
            return None
        retry_after = api_keys.rate_limit(api_key)
        if retry_after is not None:
            raise RateLimited(retry_after)
        return api_key


api = CopeNinjaAPI(
    title="CoPE Studio API",
    version="1",
    description=__doc__ or "",
    urls_namespace="api",
    auth=KeyAuth(),
    docs_url="/api/v1/docs",
    openapi_url="/api/v1/openapi.json",
)

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


def _require_policy(request: HttpRequest, slug: str) -> None:
    """403 for a policy outside a scoped key's policies, whether or not it exists."""
    key: ApiKey = request.auth  # type: ignore[attr-defined]
    if not api_keys.reaches_policy(key, slug):
        raise ApiError(
            403,
            "policy_out_of_scope",
            f"This API key is limited to chosen policies, and {slug!r} is not one of them. "
            "Ask its owner for a key that includes it.",
        )


def _require_unscoped(request: HttpRequest) -> None:
    """Text sent with the request belongs to no policy: a key limited to policies refuses it."""
    key: ApiKey = request.auth  # type: ignore[attr-defined]
    if key.policy_scoped:
        raise ApiError(
            403,
            "policy_out_of_scope",
            "This API key is limited to chosen policies; labeling under a text sent with the "
            "request belongs to no policy, so it needs a key that is not limited to policies.",
        )


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
    """Policies that are not archived; for a key limited to chosen policies, only those."""
    key = _require(request, api_keys.READ)
    policies = _policies().filter(archived_at__isnull=True)
    scoped = api_keys.scoped_policies(key)
    return policies if scoped is None else policies.filter(pk__in=scoped.values("pk"))


@v1.get("/policies/{slug}", response={200: PolicyOut, **LOOKUP_ERRORS}, summary="One policy")
def get_policy(request: HttpRequest, slug: str = SLUG_PATH) -> Any:
    _require(request, api_keys.READ)
    _require_policy(request, slug)
    return _policy(slug)


@v1.get(
    "/policies/{slug}/versions",
    response={200: list[VersionSummary], **LOOKUP_ERRORS},
    summary="A policy's versions, newest first",
)
@paginate(BoundedPagination)
def list_versions(request: HttpRequest, slug: str = SLUG_PATH) -> Any:
    _require(request, api_keys.READ)
    _require_policy(request, slug)
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
    _require_policy(request, slug)
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
            utf8(content)
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
    explain: bool = False,
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
    clauses = _explain_clauses(policy_text, contents) if explain else []
    refused = live.budget_errors(policy_text, contents)
    if refused:  # refused before anything is sent
        raise _too_long(refused)
    # The policy and (explain) each removal variant, sent at once, then read one by one.
    policies = [policy_text, *(remove_clause(policy_text, c) for c in clauses)]
    try:
        sent = [live.Sent(policy=p, contents=contents, refused={}) for p in policies]
        answers = [each.answer() for each in sent]
    except live.NoAnswer as exc:
        raise ApiError(503, "no_worker", str(exc)) from exc
    except live.LiveError as exc:
        raise ApiError(502, "worker_error", str(exc)) from exc
    answer = answers[0]
    too_long = {i: item.error for i, item in enumerate(answer.items) if item.too_long}
    if too_long:
        raise _too_long(too_long)
    worker = answer.worker
    timing = {
        "total_ms": round((time.perf_counter() - started) * 1000, 2),
        "round_trip_ms": round(max(a.seconds for a in answers) * 1000, 2),
        "model_ms": round(sum(a.model_seconds for a in answers) * 1000, 2),
    }
    effects = _clause_effects(clauses, answers) if explain else None
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
                "explain": effects[i] if effects is not None else None,
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


def _explain_clauses(policy_text: str, contents: list[str]) -> list[Clause]:
    """The clauses ``explain`` removes one at a time, refused past ``MAX_EXPLAIN_SCORES``."""
    clauses = parse_clauses(policy_text)
    scores = len(contents) * len(clauses)
    if scores > MAX_EXPLAIN_SCORES:
        raise ApiError(
            422,
            "explain_too_large",
            f"explain scores each content once per clause: {len(contents)} content(s) x "
            f"{len(clauses)} clauses = {scores} scores, over the limit of {MAX_EXPLAIN_SCORES} "
            "per request. Send fewer contents per request; nothing was labeled.",
        )
    return clauses


def _logit(p1: float) -> float:
    p = min(max(p1, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def _clause_effects(
    clauses: list[Clause], answers: list[live.LiveAnswer]
) -> list[list[dict[str, Any]] | None]:
    """Per content: the clauses whose removal changes its label, the largest change in the
    answer's logit first (``answers[0]``: the whole policy; then one per clause)."""
    out: list[list[dict[str, Any]] | None] = []
    for index, item in enumerate(answers[0].items):
        if not item.ok or item.p1 is None:
            out.append(None)
            continue
        effects = []
        for clause, removed in zip(clauses, answers[1:], strict=True):
            without = removed.items[index]
            if without.label is None or without.p1 is None or without.label == item.label:
                continue
            effects.append(
                {
                    "clause": clause.key,
                    "where": clause.where,
                    "name": clause.name,
                    "start_line": clause.start_line,
                    "end_line": clause.end_line,
                    "label_without": without.label,
                    "p1_with": item.p1,
                    "p1_without": without.p1,
                    "delta_logit": round(_logit(without.p1) - _logit(item.p1), 6),
                }
            )
        out.append(sorted(effects, key=lambda e: -abs(e["delta_logit"])))
    return out


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
    neither is a 422 (`code: invalid`).

    With `explain: true`, each result also lists the clauses whose removal changes its label,
    largest change in the answer's logit first, with p(1) with and without. It costs one score
    per clause per content (the policy with that clause removed, sent to the model workers with
    the label's own request); contents x clauses over 512 is a 422 (`explain_too_large`)."""
    started = time.perf_counter()
    _require(request, api_keys.LABEL_TEXT if body.policy_text is not None else api_keys.LABEL)
    contents = list(body.contents or []) + ([body.content] if body.content is not None else [])
    if body.policy_text is not None and body.policy is not None:
        raise ApiError(422, "invalid", "Give `policy` or `policy_text`, not both.")
    if body.policy_text is not None:
        _require_unscoped(request)
        if not body.policy_text.strip():
            raise ApiError(422, "invalid", "`policy_text` is empty.")
        return _label(
            started=started,
            contents=contents,
            policy_text=body.policy_text,
            policy=None,
            version=None,
            warning=AD_HOC_WARNING,
            explain=body.explain,
        )
    if body.policy is None:
        raise ApiError(422, "invalid", "Give `policy` (a slug) or `policy_text`.")
    _require_policy(request, body.policy)
    version = _label_version(body.policy, body.version, allow_draft=body.allow_draft)
    return _label(
        started=started,
        contents=contents,
        policy_text=version.text,
        policy=version.policy.slug,
        version=version.number,
        warning=_draft_warning(version),
        explain=body.explain,
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
        _require_unscoped(request)
        policy_text, slug, number = body.criteria_text, None, None
        warning: str | None = AD_HOC_WARNING
    else:
        slug = str(body.labeler_id)
        _require_policy(request, slug)
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
