"""The jobs page: every job across policies, filtered, paged, its running rows live."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.jobs import listing
from labeling.jobs.forms import JobListForm

VIEW_JOB = "labeling.view_job"
FILTERS = ("status", "policy", "sample_set", "started_by")


@login_required
@require_GET
def job_list(request: AuthedHttpRequest) -> HttpResponse:
    """One page of jobs, newest first; a filter that does not validate shows its errors and
    no jobs (400)."""
    require_perms(request, VIEW_JOB)
    form = JobListForm(request.GET)
    if not form.is_valid():
        context = {"form": form, "rows": [], "page": None, "query": ""}
        return render(request, "labeling/jobs/job_list.html", context, status=400)
    page = listing.jobs_page(
        form.job_filter(), before=form.cleaned_data["before"], after=form.cleaned_data["after"]
    )
    query = request.GET.copy()
    for bound in ("before", "after"):
        query.pop(bound, None)
    context = {
        "form": form,
        "page": page,
        "rows": [listing.row_context(job) for job in page.jobs],
        "query": query.urlencode(),
        "filtered": any(request.GET.get(name) for name in FILTERS),
    }
    return render(request, "labeling/jobs/job_list.html", context)


@login_required
@require_GET
def job_list_row(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """One job's row, for the page's htmx poll of a running job (it stops polling once the job
    has finished: the row it gets back has no trigger)."""
    require_perms(request, VIEW_JOB)
    job = get_object_or_404(listing.list_rows(), pk=pk)
    return render(request, "labeling/jobs/job_list.html#job-row", listing.row_context(job))
