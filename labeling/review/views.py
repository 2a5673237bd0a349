"""Screens of the review loop: the mismatch queue, decisions and review notes."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.models import Job, ReviewTask
from labeling.review.claim import (
    QueueFilter,
    ReviewError,
    claim_next_task,
    load_task,
    skip_task,
    unskip_tasks,
)
from labeling.review.counts import queue_counts
from labeling.review.decisions import submit_decision
from labeling.review.diff import wording_diff
from labeling.review.earlier import earlier_decisions, reusable_decision
from labeling.review.forms import DecisionForm, NotesPageForm, QueueFilterForm, ReuseForm, SkipForm
from labeling.review.notes import review_notes

QUEUE = "labeling/review/review_queue.html"
NOTES = "labeling/review/review_notes.html"
FULL = "labeling/review/review_full.html"
_FILTER_KEYS = ("job", "policy", "side", "max_margin")
# The card shows this much of a content item; the rest is one click away (review_full).
CONTENT_PREVIEW_CHARS = 5_000


def _filter_query(request: HttpRequest) -> str:
    """The queue filter as ``?job=..`` (or ""), carried through decisions and redirects."""
    query = urlencode([(k, request.GET[k]) for k in _FILTER_KEYS if request.GET.get(k)])
    return f"?{query}" if query else ""


def _queue_context(
    request: AuthedHttpRequest,
    scope: QueueFilter,
    task: ReviewTask | None,
    form: DecisionForm | None = None,
    notice: str = "",
) -> dict[str, Any]:
    earlier = earlier_decisions(task) if task else []
    return {
        "task": task,
        "form": form or DecisionForm(),
        "scope": scope,
        "counts": queue_counts(scope),
        "notice": notice,
        "filter_query": _filter_query(request),
        "diff": wording_diff(task.job.text_a, task.job.text_b) if task else None,
        "earlier": earlier,
        "reusable": reusable_decision(task, earlier) if task else None,
        "content_preview_chars": CONTENT_PREVIEW_CHARS,
    }


def _next_task_response(
    request: AuthedHttpRequest, *, form: DecisionForm | None = None, notice: str = ""
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
def review_queue(request: AuthedHttpRequest) -> HttpResponse:
    """Claims the reviewer's next task on GET: a reviewer holds one task, so reloads are safe."""
    require_perms(request, "labeling.add_decision")
    return _next_task_response(request)


def _held_task(request: AuthedHttpRequest, task_id: int) -> ReviewTask:
    """The task row alone: a decision or a skip needs nothing else (``load_task`` for the card)."""
    require_perms(request, "labeling.add_decision")
    try:
        return ReviewTask.objects.get(pk=task_id)
    except ReviewTask.DoesNotExist:
        raise Http404("No such review task.") from None


def _card_task(task_id: int) -> ReviewTask:
    try:
        return load_task(task_id)  # by key, one large table per query
    except ObjectDoesNotExist:  # the task, or its job or item, deleted meanwhile
        raise Http404("No such review task.") from None


def _after_action(request: AuthedHttpRequest, notice: str = "") -> HttpResponse:
    if request.htmx:
        return _next_task_response(request, notice=notice)
    if notice:
        messages.warning(request, notice)
    return redirect(reverse("labeling:queue") + _filter_query(request))


def _refused(form: SkipForm) -> HttpResponse:
    """A skip whose form failed: nothing changed, and the reason in plain text."""
    reason = " ".join(str(error) for error in form.non_field_errors()) or "the form was not valid."
    return HttpResponseBadRequest(f"Nothing was changed: {reason}")


@login_required
@require_POST
def review_submit(request: AuthedHttpRequest, task_id: int) -> HttpResponse:
    task = _held_task(request, task_id)
    if "reused" in request.POST and "label" not in request.POST:
        reuse = ReuseForm(request.POST)
        form = DecisionForm(reuse.decision_data() if reuse.is_valid() else request.POST)
    else:
        form = DecisionForm(request.POST)
    if not form.is_valid():
        scope = QueueFilterForm(request.GET or None).scope()
        context = _queue_context(request, scope, _card_task(task.pk), form)
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
def review_skip(request: AuthedHttpRequest, task_id: int) -> HttpResponse:
    task = _held_task(request, task_id)
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _refused(form)
    try:
        skip_task(task=task, reviewer=request.user)
    except ReviewError as exc:
        return _after_action(request, str(exc))
    return _after_action(request)


@login_required
@require_POST
def review_unskip(request: AuthedHttpRequest) -> HttpResponse:
    """Bring back the tasks this reviewer skipped (in the current filter)."""
    require_perms(request, "labeling.add_decision")
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _refused(form)
    scope = QueueFilterForm(request.GET or None).scope()
    count = unskip_tasks(reviewer=request.user, scope=scope)
    return _after_action(request, "" if count else "You had skipped no open task here.")


@login_required
@require_GET
def review_notes_view(request: AuthedHttpRequest, job_id: int) -> HttpResponse:
    """What reviewers said about a job's mismatches; the policy editor loads the fragment."""
    require_perms(request, "labeling.view_decision")
    job = get_object_or_404(Job.objects.select_related("version__policy", "sample_set"), pk=job_id)
    form = NotesPageForm(request.GET or None)
    page, clause = form.page_and_clause()
    context = {
        "job": job,
        "version": job.version,
        "notes": review_notes(job, page=page, clause=clause),
    }
    template = f"{NOTES}#notes" if request.htmx else NOTES
    return render(request, template, context)


@login_required
@require_GET
def review_full(request: AuthedHttpRequest, task_id: int) -> HttpResponse:
    """A task's whole content and both whole wordings, on demand (the card shows them cut)."""
    require_perms(request, "labeling.view_decision")
    task = get_object_or_404(
        ReviewTask.objects.select_related("item", "job__version__policy"), pk=task_id
    )
    return render(request, FULL, {"task": task})
