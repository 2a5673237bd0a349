"""Screens of shared review: the adjudication queue, a job's and a policy's reviewer agreement,
and a job's assignment."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest, htmx_redirect
from cope_studio.lib.permissions import require_perms
from labeling.models import Job, ReviewStatus, ReviewTask
from labeling.review.assignment import AssignmentError, assign_job_tasks, assignment_summary
from labeling.review.claim import ReviewError
from labeling.review.forms import AdjudicationFilterForm, AdjudicationForm, AssignForm
from labeling.review.snapshots import read_snapshot, request_refresh
from labeling.review.team import from_json
from labeling.review.votes import adjudicate, awaiting_adjudication, task_votes
from policies.models import Policy

ADJUDICATION = "labeling/review/adjudication.html"
ADJUDICATE = "labeling/review/adjudicate_task.html"
TEAM = "labeling/review/review_team.html"
LEAD = "labeling.adjudicate_reviewtask"


@login_required
@require_GET
def adjudication_queue(request: AuthedHttpRequest) -> HttpResponse:
    """Mismatches whose reviewers disagree, for leads and admins to settle."""
    require_perms(request, LEAD)
    form = AdjudicationFilterForm(request.GET or None)
    valid = form.is_valid()
    policy = form.cleaned_data.get("policy") if valid else None
    page = (form.cleaned_data.get("page") or 1) if valid else 1
    context = {"form": form, "page": awaiting_adjudication(policy=policy, page=page)}
    template = f"{ADJUDICATION}#adjudication-list" if request.htmx else ADJUDICATION
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def adjudicate_task(request: AuthedHttpRequest, task_id: int) -> HttpResponse:
    """Every reviewer's vote on one mismatch, and the lead's final decision."""
    require_perms(request, LEAD)
    task = get_object_or_404(
        ReviewTask.objects.select_related("item", "job__version", "policy"), pk=task_id
    )
    form = AdjudicationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            adjudicate(task=task, lead=request.user, **form.cleaned_data)
        except ReviewError as exc:
            messages.warning(request, str(exc))
        else:
            messages.success(request, f"Mismatch #{task.pk} adjudicated.")
        return htmx_redirect(request, reverse("labeling:adjudication_queue"))
    context = {
        "task": task,
        "votes": task_votes(task),
        "form": form,
        "waiting": task.status == ReviewStatus.ADJUDICATE,
    }
    status = 400 if form.errors else 200
    return render(request, ADJUDICATE, context, status=status)


def _agreement_context(policy: Policy, job: Job | None) -> dict[str, Any]:
    """The stored figures (one indexed query); a refresh is queued when they are missing or
    out of date, and the page polls until they are current. Nothing here reads the votes."""
    snapshot = read_snapshot(policy_id=policy.pk, job_id=job.pk if job else None)
    if snapshot is None or not snapshot.current:
        request_refresh(policy_id=policy.pk, job_id=job.pk if job else None)
    context: dict[str, Any] = {"policy": policy, "job": job, "snapshot": snapshot}
    if snapshot is None or snapshot.computed_at is None:
        return {**context, "team": None, "figures": None, "pairs": []}
    team = from_json(snapshot.figures)
    pairs = [
        {
            "a": team.names.get(pair.rater_a, pair.rater_a),
            "b": team.names.get(pair.rater_b, pair.rater_b),
            "pair": pair,
        }
        for pair in team.figures.pairs
    ]
    return {**context, "team": team, "figures": team.figures, "pairs": pairs}


def _polled(request: AuthedHttpRequest) -> bool:
    """The page's own poll of a stale snapshot: it gets the agreement section alone."""
    return bool(request.htmx and request.htmx.target == "team-agreement")


@login_required
@require_GET
def job_review_team(request: AuthedHttpRequest, job_id: int) -> HttpResponse:
    """A job's reviewer agreement and who its waiting mismatches are assigned to."""
    require_perms(request, "labeling.view_job", "labeling.view_decision")
    job = get_object_or_404(Job.objects.select_related("version__policy", "sample_set"), pk=job_id)
    if _polled(request):
        return render(request, f"{TEAM}#agreement", _agreement_context(job.version.policy, job))
    return _job_team_page(request, job, AssignForm())


def _job_team_page(
    request: AuthedHttpRequest, job: Job, form: AssignForm, status: int = 200
) -> HttpResponse:
    summary = assignment_summary(job)
    users = {u.pk: u for u in form.fields["reviewers"].queryset}  # type: ignore[attr-defined]
    assigned = [
        (users[pk].get_username() if pk in users else f"user #{pk}", count)
        for pk, count in sorted(summary.items())
        if pk
    ]
    context = {
        "job": job,
        "form": form,
        "open_queue": summary.get(0, 0),
        "assigned": assigned,
        "can_assign": request.user.has_perm("labeling.change_job"),
    }
    if request.htmx:
        return render(request, f"{TEAM}#assignment", context, status=status)
    context |= _agreement_context(job.version.policy, job)
    return render(request, TEAM, context, status=status)


@login_required
@require_POST
def job_assign(request: AuthedHttpRequest, job_id: int) -> HttpResponse:
    """Assign a job's waiting mismatches (authors and admins)."""
    require_perms(request, "labeling.view_job", "labeling.change_job")
    job = get_object_or_404(Job.objects.select_related("version__policy", "sample_set"), pk=job_id)
    form = AssignForm(request.POST)
    if form.is_valid():
        try:
            result = assign_job_tasks(
                job=job,
                mode=form.cleaned_data["mode"],
                reviewers=form.cleaned_data["reviewers"],
                by=request.user,
            )
        except AssignmentError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Assignment saved: {result.changed} mismatches changed.")
            if not request.htmx:
                return redirect("labeling:job_review_team", job_id=job.pk)
            form = AssignForm()
    status = 400 if form.errors and not request.htmx else 200
    return _job_team_page(request, job, form, status)


@login_required
@require_GET
def policy_review_team(request: AuthedHttpRequest, policy_id: int) -> HttpResponse:
    """Reviewer agreement over all of a policy's jobs."""
    require_perms(request, "policies.view_policy", "labeling.view_decision")
    policy = get_object_or_404(Policy, pk=policy_id)
    template = f"{TEAM}#agreement" if _polled(request) else TEAM
    return render(request, template, _agreement_context(policy, None))
