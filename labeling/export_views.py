"""Downloads from the version page: policy Markdown, twin Markdown, bundle, training JSONL, CSV.

Every download streams (``StreamingHttpResponse`` over ``labeling.exports`` generators), so a
large job's CSV or a long history's JSONL never sits whole in the web process's memory.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from cope_studio.lib.permissions import require_perms
from labeling import exports
from policies.models import Policy, Version

_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "json": "application/json; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


def _download(chunks: Iterator[str] | str, name: str, extension: str) -> HttpResponse:
    response: HttpResponse
    if isinstance(chunks, str):
        response = HttpResponse(chunks.encode(), content_type=_TYPES[extension])
    else:
        response = StreamingHttpResponse(
            (chunk.encode() for chunk in chunks), content_type=_TYPES[extension]
        )  # type: ignore[assignment]
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _refused(exc: Exception) -> HttpResponse:
    return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")


@login_required
@require_GET
def version_export(request: HttpRequest, version_id: int, fmt: str) -> HttpResponse:
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
def policy_export(request: HttpRequest, policy_id: int, fmt: str) -> HttpResponse:
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
