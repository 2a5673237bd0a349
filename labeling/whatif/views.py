"""The what-if pages: a version's edit form (``whatif``), a run's page (``whatif_run``) with its
cancel and "Make it a version" buttons, and the version page's card (``whatif_card``).

Permissions as for jobs and probes: whoever may see jobs and versions sees what-if runs
(``labeling.view_job``); authors and admins start one (``labeling.add_job``) and cancel it
(``labeling.change_job``); making a version of one takes ``policies.add_version``.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest, htmx_redirect
from cope_studio.lib.permissions import require_perms
from labeling.explain.services import cancel_explain
from labeling.models import ExplainRun, RunKind
from labeling.whatif import pages, services
from labeling.whatif.forms import CancelForm, MakeVersionForm, WhatIfForm
from policies.models import Version

FORM = "labeling/whatif/whatif.html"
RUN = "labeling/whatif/run.html"
VIEW = ("labeling.view_job", "policies.view_version")


def _get_version_for_user(request: AuthedHttpRequest, version_id: int, *perms: str) -> Version:
    require_perms(request, *VIEW, *perms)
    return get_object_or_404(Version.objects.select_related("policy"), pk=version_id)


def _get_run_for_user(request: AuthedHttpRequest, run_id: int, *perms: str) -> ExplainRun:
    require_perms(request, *VIEW, *perms)
    runs = ExplainRun.objects.select_related(
        "version__policy", "made_version", "requested_by", "job"
    )
    return get_object_or_404(runs, pk=run_id, kind=RunKind.WHATIF)


@login_required
@require_http_methods(["GET", "POST"])
def whatif_form(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    """The what-if form for one clause (``?clause=``) and the version's earlier runs. A POST
    starts the run and goes to its page; a refused edit comes back with the words kept."""
    version = _get_version_for_user(
        request, version_id, *(("labeling.add_job",) if request.method == "POST" else ())
    )
    choices = pages.clause_choices(version)
    if request.method == "POST":
        form = WhatIfForm(request.POST, clauses=choices)
        if form.is_valid():
            try:
                run = services.start_whatif(version, by=request.user, **form.cleaned_data)
            except services.WhatIfError as exc:
                form.add_error(None, str(exc))
            else:
                return htmx_redirect(request, reverse("labeling:whatif_run", args=[run.pk]))
        key = str(form.data.get("clause_key") or "")
    else:
        key = request.GET.get("clause", "")
        wording = pages.clause_wording(version, key) if key else None
        initial = {"clause_key": key, "edit_a": wording.wording_a if wording else ""}
        form = WhatIfForm(initial=initial, clauses=choices)
    context = {"page": pages.form_page(version, key, request.user), "form": form}
    return render(request, f"{FORM}#whatif-form" if request.htmx else FORM, context)


@login_required
@require_GET
def whatif_run(request: AuthedHttpRequest, run_id: int) -> HttpResponse:
    """A what-if run's page; its htmx polls get the run's section alone while it scores."""
    run = _get_run_for_user(request, run_id)
    context = {"page": pages.run_page(run, request.user), "make_form": MakeVersionForm()}
    return render(request, f"{RUN}#whatif-run" if request.htmx else RUN, context)


@login_required
@require_POST
def whatif_cancel(request: AuthedHttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id, "labeling.change_job")
    if not CancelForm(request.POST).is_valid():
        raise BadRequest("This action needs its button on the what-if page.")
    if cancel_explain(run):
        messages.info(request, "What-if run cancelled; results still arriving are discarded.")
    else:
        messages.info(request, "This what-if run was no longer running.")
    return htmx_redirect(request, reverse("labeling:whatif_run", args=[run.pk]))


@login_required
@require_POST
def whatif_make_version(request: AuthedHttpRequest, run_id: int) -> HttpResponse:
    """The "Make it a version" button: a draft version with the edit, then its page; refused,
    the run's page again with the reason and the change note kept."""
    run = _get_run_for_user(request, run_id, "policies.add_version")
    form = MakeVersionForm(request.POST)
    if form.is_valid():
        try:
            version = services.make_version(
                run, by=request.user, change_note=form.cleaned_data["change_note"]
            )
        except services.WhatIfError as exc:
            form.add_error(None, str(exc))
        else:
            messages.info(request, f"Draft {version} made from this what-if edit.")
            return htmx_redirect(request, version.get_absolute_url())
    context = {"page": pages.run_page(run, request.user), "make_form": form}
    return render(request, RUN, context)


@login_required
@require_GET
def whatif_card(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    """The version page's what-if card (loaded by htmx): the evidence the version was made
    from, its own what-if runs and a clause picker."""
    version = _get_version_for_user(request, version_id)
    context = {"card": pages.whatif_card(version), "version": version}
    return render(request, f"{FORM}#whatif-card", context)
