"""The finalize panel on the version page and the finalize action (admins only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.probes import pages as probe_pages
from labeling.release import exports, regression_run
from labeling.release.finalize import NotReady, finalize, finalize_readiness
from labeling.release.forms import FinalizeForm
from policies.models import Policy, Version
from policies.services import PolicyError

FINALIZE = "labeling/release/review_finalize.html"


def _finalize_context(
    request: AuthedHttpRequest, version: Version, error: str = ""
) -> dict[str, Any]:
    readiness = finalize_readiness(version)
    findings = readiness.probe
    run = findings.run if findings is not None else None
    frozen = (version.finalize_evidence or {}).get("probe") or {}
    diff = readiness.regression
    regression = (
        regression_run.panel_view(diff, version, by=request.user)
        if diff is not None and not version.is_finalized
        else None
    )
    return {
        "version": version,
        "readiness": readiness,
        "can_finalize": request.user.has_perm("policies.finalize_version"),
        "can_probe": request.user.has_perm("labeling.add_job"),
        "error": error,
        "form": FinalizeForm(),
        "evidence_gate": exports.gate_text(version.finalize_evidence),
        # The version's probe as finalize reads it now, and as it was frozen at finalize.
        "probe": probe_pages.probe_lines(run.summary) if run is not None else None,
        "probe_run": run,
        "evidence_probe": probe_pages.probe_lines(frozen.get("summary")),
        "evidence_probe_record": frozen,
        # The diff against the last finalized version, and as it was frozen at finalize.
        "regression": regression,
        "evidence_regression": (version.finalize_evidence or {}).get("regression"),
    }


def _version_lookup(request: AuthedHttpRequest, version_id: int, perm: str) -> Version:
    require_perms(request, perm)
    return get_object_or_404(
        Version.objects.select_related("policy", "finalized_by"), pk=version_id
    )


@login_required
@require_GET
def finalize_panel(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    """Readiness of a version: which condition is missing, and the button when none is."""
    version = _version_lookup(request, version_id, "policies.view_version")
    template = f"{FINALIZE}#finalize-panel" if request.htmx else FINALIZE
    return render(request, template, _finalize_context(request, version))


@login_required
@require_POST
def finalize_view(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    version = _version_lookup(request, version_id, "policies.finalize_version")
    form = FinalizeForm(request.POST)
    error = ""
    if not form.is_valid():
        error = "Reload the page: the finalize request did not say which job it checked."
    else:
        try:
            version = finalize(
                version=version,
                by=request.user,
                override_reason=form.cleaned_data["override_reason"],
                job_id=form.cleaned_data["job"],
            )
        except (NotReady, PolicyError) as exc:
            error = f"Not finalized: {exc}"
    if request.htmx and error:
        context = _finalize_context(request, version, error)
        return render(request, f"{FINALIZE}#finalize-panel", context)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"{version} is finalized; it can now be exported.")
    if request.htmx:
        # The header badge and the export buttons change too: reload the whole page once.
        response = HttpResponse(status=204)
        response["HX-Redirect"] = _version_url(version)
        return response
    return redirect(_version_url(version))


def _version_url(version: Version) -> str:
    return reverse("policies:version", args=[version.pk])


_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "json": "application/json; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


def _download(chunks: Iterator[str] | str, name: str, extension: str) -> HttpResponseBase:
    response: HttpResponseBase
    if isinstance(chunks, str):
        response = HttpResponse(chunks.encode(), content_type=_TYPES[extension])
    else:
        response = StreamingHttpResponse(
            (chunk.encode() for chunk in chunks), content_type=_TYPES[extension]
        )
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _refused(exc: Exception) -> HttpResponse:
    return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")


@login_required
@require_GET
def version_export(request: AuthedHttpRequest, version_id: int, fmt: str) -> HttpResponseBase:
    """A finalized version: its text (md), its twin (twin.md) or its deciding job (csv)."""
    require_perms(request, "policies.view_version", "labeling.view_label")
    version = get_object_or_404(Version.objects.select_related("policy"), pk=version_id)
    try:
        version = exports.finalized_version(version.policy, version.number)
        if fmt == "md":
            return _download(version.text, exports.filename(version.policy, version, "md"), "md")
        if fmt == "twin.md":
            name = exports.filename(version.policy, version, "md", suffix="-twin")
            return _download(version.twin_text, name, "md")
        job = exports.deciding_job_of(version)
    except exports.ExportError as exc:
        return _refused(exc)
    name = exports.filename(version.policy, version, "csv", suffix=f"-job{job.pk}-items")
    return _download(exports.iter_job_csv(job), name, "csv")


@login_required
@require_GET
def policy_export(request: AuthedHttpRequest, policy_id: int, fmt: str) -> HttpResponseBase:
    """The whole policy: the JSON bundle (``json``) or the training JSONL (``jsonl``)."""
    require_perms(request, "policies.view_policy", "labeling.view_goldlabel")
    policy = get_object_or_404(Policy, pk=policy_id)
    if fmt == "json":
        return _download(
            exports.iter_bundle(policy), exports.filename(policy, None, "json"), "json"
        )
    summary = exports.TrainingSummary()
    name = exports.filename(policy, None, "jsonl", suffix="-training")
    return _download(exports.iter_training_jsonl(policy, summary), name, "jsonl")
