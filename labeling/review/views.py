"""Screens of the review loop: the mismatch queue, decisions and review notes."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.explain.pages import card_clause
from labeling.models import Decision, Job, ReviewTask, ReviewVote
from labeling.review.claim import (
    QueueFilter,
    ReviewError,
    claim_next,
    load_task,
    skip_task,
    unskip_tasks,
)
from labeling.review.corrections import (
    EDITABLE,
    decision_history,
    edit_decision,
    may_edit,
    my_decisions,
    undo_last_decision,
)
from labeling.review.counts import queue_counts
from labeling.review.decisions import submit_decision
from labeling.review.diff import wording_diff
from labeling.review.earlier import earlier_decisions, reusable_decision
from labeling.review.forms import (
    DecisionEditForm,
    DecisionForm,
    NotesPageForm,
    PageForm,
    QueueFilterForm,
    ReuseForm,
    SkipForm,
    UndoForm,
)
from labeling.review.notes import review_notes
from labeling.review.votes import task_with_vote_rule

QUEUE = "labeling/review/review_queue.html"
NOTES = "labeling/review/review_notes.html"
FULL = "labeling/review/review_full.html"
EDIT = "labeling/review/decision_edit.html"
DECISIONS = "labeling/review/decision_list.html"
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
    saved: Decision | ReviewVote | None = None,
) -> dict[str, Any]:
    earlier = earlier_decisions(task) if task else []
    return {
        "started": True,
        "saved": saved if isinstance(saved, Decision) else None,
        # With overlap a decision is a vote: kept, but not editable like a final decision.
        "voted": saved if isinstance(saved, ReviewVote) else None,
        "task": task,
        "form": form or DecisionForm(),
        "scope": scope,
        "counts": queue_counts(scope),
        "notice": notice,
        "filter_query": _filter_query(request),
        "diff": wording_diff(task.job.text_a, task.job.text_b) if task else None,
        "earlier": earlier,
        "reusable": reusable_decision(task, earlier) if task else None,
        # The clause an explain run found deciding this mismatch: one indexed query.
        "deciding": card_clause(task.job, task.item_id) if task else None,
        "content_preview_chars": CONTENT_PREVIEW_CHARS,
    }


def _card_response(
    request: AuthedHttpRequest, context: dict[str, Any], filter_form: QueueFilterForm
) -> HttpResponse:
    if request.htmx:
        return render(request, f"{QUEUE}#task-card", context)
    context["filter_form"] = filter_form
    return render(request, QUEUE, context)


def _next_task_response(
    request: AuthedHttpRequest,
    *,
    form: DecisionForm | None = None,
    notice: str = "",
    saved: Decision | ReviewVote | None = None,
) -> HttpResponse:
    filter_form = QueueFilterForm(request.GET or None)
    if filter_form.is_bound and not filter_form.is_valid():
        return _start_page(request, filter_form)  # no claim for a filter that is not one
    scope = filter_form.scope()
    result = claim_next(
        reviewer=request.user,
        job=scope.job,
        policy=scope.policy,
        side_said_1=scope.side_said_1,
        max_margin=scope.max_margin,
    )
    notice = " ".join(text for text in (notice, result.notice) if text)
    context = _queue_context(request, scope, result.task, form, notice, saved)
    return _card_response(request, context, filter_form)


def _start_page(request: AuthedHttpRequest, filter_form: QueueFilterForm) -> HttpResponse:
    """The queue before a part of it is chosen: filters and counts, and nothing claimed."""
    scope = QueueFilter()
    errors = " ".join(str(e) for field in filter_form.errors.values() for e in field)
    context = {
        "started": False,
        "scope": scope,
        "counts": queue_counts(scope),
        "filter_form": filter_form,
        "filter_query": "",
        "notice": f"Nothing was claimed: {errors}" if errors else "",
    }
    if request.htmx:
        return render(request, f"{QUEUE}#task-card", context)
    return render(request, QUEUE, context, status=400 if filter_form.errors else 200)


@login_required
@require_GET
def review_queue(request: AuthedHttpRequest) -> HttpResponse:
    """The queue page claims nothing until the reviewer chose what to review (a filter, or
    "Start reviewing" for the whole queue); then, and for the card's htmx request, it claims
    the reviewer's next task: a reviewer holds one task, so reloads are safe."""
    require_perms(request, "labeling.add_decision")
    filter_form = QueueFilterForm(request.GET or None)
    if not request.htmx and not filter_form.chosen():
        return _start_page(request, filter_form)
    return _next_task_response(request)


def _held_task(
    request: AuthedHttpRequest, task_id: int, *, with_vote_rule: bool = False
) -> ReviewTask:
    """The task row alone: a skip needs nothing else, a decision its vote rule too, in the same
    statement (``load_task`` for the card)."""
    require_perms(request, "labeling.add_decision")
    try:
        if with_vote_rule:
            return task_with_vote_rule(task_id)
        return ReviewTask.objects.get(pk=task_id)
    except ReviewTask.DoesNotExist:
        raise Http404("No such review task.") from None


def _card_task(task_id: int) -> ReviewTask:
    try:
        return load_task(task_id)  # with its item and job (see load_task)
    except ObjectDoesNotExist:  # the task, or its job or item, deleted meanwhile
        raise Http404("No such review task.") from None


def _queue_url(request: HttpRequest) -> str:
    """The queue, reviewing in the request's filter (the whole queue: ``start``)."""
    return reverse("labeling:queue") + (_filter_query(request) or "?start=1")


def _after_action(
    request: AuthedHttpRequest, notice: str = "", saved: Decision | ReviewVote | None = None
) -> HttpResponse:
    if request.htmx:
        return _next_task_response(request, notice=notice, saved=saved)
    if notice:
        messages.warning(request, notice)
    return redirect(_queue_url(request))


def _refused(form: SkipForm | UndoForm) -> HttpResponse:
    """A skip whose form failed: nothing changed, and the reason in plain text."""
    reason = " ".join(str(error) for error in form.non_field_errors()) or "the form was not valid."
    return HttpResponseBadRequest(f"Nothing was changed: {reason}")


@login_required
@require_POST
def review_submit(request: AuthedHttpRequest, task_id: int) -> HttpResponse:
    task = _held_task(request, task_id, with_vote_rule=True)
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
        saved = submit_decision(task=task, reviewer=request.user, **form.cleaned_data)
    except ReviewError as exc:
        return _after_action(request, str(exc))
    return _after_action(request, saved=saved)


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
@require_POST
def review_undo(request: AuthedHttpRequest) -> HttpResponse:
    """Undo the reviewer's last decision: back to that card, claimed again, the decision's
    label, wording, quote and note filled in to correct."""
    require_perms(request, "labeling.add_decision")
    form = UndoForm(request.POST)
    if not form.is_valid():
        return _refused(form)
    try:
        undone = undo_last_decision(reviewer=request.user)
    except ReviewError as exc:
        return _after_action(request, str(exc))
    if not request.htmx:
        messages.info(request, f"Your decision on mismatch #{undone.task.pk} was undone.")
        return redirect(reverse("labeling:queue") + f"?job={undone.task.job_id}")
    filter_form = QueueFilterForm(request.GET or None)
    fields = {name: undone.before[name] for name in EDITABLE}
    notice = f"Your decision on mismatch #{undone.task.pk} was undone; correct it and save."
    context = _queue_context(
        request, filter_form.scope(), _card_task(undone.task.pk), DecisionForm(fields), notice
    )
    return _card_response(request, context, filter_form)


@login_required
@require_GET
def decision_list(request: AuthedHttpRequest) -> HttpResponse:
    """The reviewer's decisions, newest first, each a link to its edit page (whoever may change
    any decision sees everyone's)."""
    require_perms(request, "labeling.add_decision")
    everyone = request.user.has_perm("labeling.change_decision")
    page = PageForm(request.GET or None).page_number()
    context = {
        "page": my_decisions(request.user, everyone=everyone, page=page),
        "everyone": everyone,
    }
    return render(request, DECISIONS, context)


def _editable(request: AuthedHttpRequest, decision_id: int) -> Decision:
    decision = get_object_or_404(
        Decision.objects.select_related("reviewer", "task__item", "task__job__version__policy"),
        pk=decision_id,
    )
    if not may_edit(request.user, decision):
        raise PermissionDenied
    return decision


@login_required
@require_http_methods(["GET", "POST"])
def decision_edit(request: AuthedHttpRequest, decision_id: int) -> HttpResponse:
    """Correct a decision: one's own, or (admins) anyone's; every change is kept."""
    decision = _editable(request, decision_id)
    if request.method == "POST":
        form = DecisionEditForm(request.POST)
        if form.is_valid():
            change = edit_decision(decision=decision, by=request.user, **form.cleaned_data)
            if change is None:
                messages.info(request, "Nothing changed.")
            else:
                messages.success(request, f"Decision on mismatch #{decision.task_id} corrected.")
            return redirect("labeling:decision_edit", decision_id=decision.pk)
    else:
        form = DecisionEditForm(initial={n: getattr(decision, n) for n in EDITABLE})
    context = {
        "decision": decision,
        "task": decision.task,
        "form": form,
        "history": decision_history(decision.task_id),
        "content_preview_chars": CONTENT_PREVIEW_CHARS,
    }
    return render(request, EDIT, context, status=400 if form.errors else 200)


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
