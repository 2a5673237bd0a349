"""Screens of the review loop: the mismatch queue, decisions, review notes and finalizing."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_POST

from cope_studio.lib.permissions import require_perms
from labeling.models import Job, ReviewTask
from labeling.review import (
    NotReady,
    QueueFilter,
    ReviewError,
    claim_next_task,
    earlier_decisions,
    finalize,
    finalize_readiness,
    queue_counts,
    review_notes,
    skip_task,
    submit_decision,
    unskip_tasks,
)
from labeling.review_forms import DecisionForm, FinalizeForm, QueueFilterForm, SkipForm
from policies.diff import word_diff_html
from policies.models import Version
from policies.services import PolicyError

QUEUE = "labeling/review_queue.html"
NOTES = "labeling/review_notes.html"
FINALIZE = "labeling/review_finalize.html"
_FILTER_KEYS = ("job", "policy", "side", "max_margin")


@lru_cache(maxsize=32)
def _wording_diff(text_a: str, text_b: str) -> SafeString:
    # Every task of a job shows the same two wordings; a policy is a few thousand words.
    return word_diff_html(text_a, text_b)


def _filter_query(request: HttpRequest) -> str:
    """The queue filter as ``?job=..`` (or ""), carried through decisions and redirects."""
    query = urlencode([(k, request.GET[k]) for k in _FILTER_KEYS if request.GET.get(k)])
    return f"?{query}" if query else ""


def _queue_context(
    request: HttpRequest,
    scope: QueueFilter,
    task: ReviewTask | None,
    form: DecisionForm | None = None,
    notice: str = "",
) -> dict[str, Any]:
    return {
        "nav": "review",
        "task": task,
        "form": form or DecisionForm(),
        "scope": scope,
        "counts": queue_counts(scope),
        "notice": notice,
        "filter_query": _filter_query(request),
        "wording_diff": _wording_diff(task.job.text_a, task.job.text_b) if task else "",
        "earlier": earlier_decisions(task) if task else [],
    }


def _next_task_response(
    request: HttpRequest, *, form: DecisionForm | None = None, notice: str = ""
) -> HttpResponse:
    filter_form = QueueFilterForm(request.GET or None)
    scope = filter_form.scope()
    task = claim_next_task(
        reviewer=request.user,
        job=scope.job,
        policy=scope.policy,
        side_said_1=scope.side_said_1,
        max_margin=scope.max_margin,
    )
    context = _queue_context(request, scope, task, form, notice)
    if request.htmx:
        return render(request, f"{QUEUE}#task-card", context)
    context["filter_form"] = filter_form
    return render(request, QUEUE, context)


@login_required
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    """Claims the reviewer's next task on GET: a reviewer holds one task, so reloads are safe."""
    require_perms(request, "labeling.add_decision")
    return _next_task_response(request)


def _held_task(request: HttpRequest, task_id: int) -> ReviewTask:
    require_perms(request, "labeling.add_decision")
    return get_object_or_404(
        ReviewTask.objects.select_related("item", "job", "job__version", "policy"), pk=task_id
    )


def _after_action(request: HttpRequest, notice: str = "") -> HttpResponse:
    if request.htmx:
        return _next_task_response(request, notice=notice)
    if notice:
        messages.warning(request, notice)
    return redirect(reverse("labeling:queue") + _filter_query(request))


@login_required
@require_POST
def review_submit(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _held_task(request, task_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        scope = QueueFilterForm(request.GET or None).scope()
        context = _queue_context(request, scope, task, form)
        if request.htmx:
            return render(request, f"{QUEUE}#task-card", context)
        context["filter_form"] = QueueFilterForm(request.GET or None)
        return render(request, QUEUE, context, status=400)
    try:
        submit_decision(task=task, reviewer=request.user, **form.cleaned_data)
    except ReviewError as exc:
        return _after_action(request, str(exc))
    return _after_action(request)


@login_required
@require_POST
def review_skip(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _held_task(request, task_id)
    SkipForm(request.POST).is_valid()
    try:
        skip_task(task=task, reviewer=request.user)
    except ReviewError as exc:
        return _after_action(request, str(exc))
    return _after_action(request)


@login_required
@require_POST
def review_unskip(request: HttpRequest) -> HttpResponse:
    """Bring back the tasks this reviewer skipped (in the current filter)."""
    require_perms(request, "labeling.add_decision")
    SkipForm(request.POST).is_valid()
    scope = QueueFilterForm(request.GET or None).scope()
    count = unskip_tasks(reviewer=request.user, scope=scope)
    return _after_action(request, "" if count else "You had skipped no open task here.")


@login_required
@require_GET
def review_notes_view(request: HttpRequest, job_id: int) -> HttpResponse:
    """What reviewers said about a job's mismatches; the policy editor loads the fragment."""
    require_perms(request, "labeling.view_decision")
    job = get_object_or_404(Job.objects.select_related("version__policy", "sample_set"), pk=job_id)
    context = {"job": job, "version": job.version, "notes": review_notes(job), "nav": "review"}
    template = f"{NOTES}#notes" if request.htmx else NOTES
    return render(request, template, context)


def _finalize_context(request: HttpRequest, version: Version, error: str = "") -> dict[str, Any]:
    return {
        "version": version,
        "readiness": finalize_readiness(version),
        "can_finalize": request.user.has_perm("policies.finalize_version"),
        "threshold_percent": version.policy.agreement_threshold * 100,
        "error": error,
    }


def _version_lookup(request: HttpRequest, version_id: int, perm: str) -> Version:
    require_perms(request, perm)
    return get_object_or_404(
        Version.objects.select_related("policy", "finalized_by"), pk=version_id
    )


@login_required
@require_GET
def finalize_panel(request: HttpRequest, version_id: int) -> HttpResponse:
    """Readiness of a version: which condition is missing, and the button when none is."""
    version = _version_lookup(request, version_id, "policies.view_version")
    template = f"{FINALIZE}#finalize-panel" if request.htmx else FINALIZE
    return render(request, template, _finalize_context(request, version))


@login_required
@require_POST
def finalize_view(request: HttpRequest, version_id: int) -> HttpResponse:
    version = _version_lookup(request, version_id, "policies.finalize_version")
    form = FinalizeForm(request.POST)
    readiness = finalize_readiness(version)
    error = ""
    if not form.is_valid() or readiness.job is None:
        error = "Reload the page: the finalize request did not say which job it checked."
    elif form.cleaned_data["job"] != readiness.job.pk:
        error = f"Job #{readiness.job.pk} finished since this page was loaded; check it first."
    else:
        try:
            version = finalize(version=version, by=request.user)
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


urlpatterns = [
    path("review/", review_queue, name="queue"),
    path("review/<int:task_id>/decide/", review_submit, name="review_submit"),
    path("review/<int:task_id>/skip/", review_skip, name="review_skip"),
    path("review/skipped/", review_unskip, name="review_unskip"),
    path("jobs/<int:job_id>/review-notes/", review_notes_view, name="review_notes"),
    path("versions/<int:version_id>/finalize/", finalize_view, name="finalize"),
    path("versions/<int:version_id>/finalize/panel/", finalize_panel, name="finalize_panel"),
]
