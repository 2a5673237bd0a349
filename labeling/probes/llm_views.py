"""The probe page's carve-out section: ask the LLM, sign carve-outs off, score them.

Permissions as for probes: whoever may see jobs sees the section (``labeling.view_job``);
authors and admins ask, decide and score (``labeling.change_job``). Every button is a POST
form; htmx posts get the section back (``_carveouts.html``), plain posts a redirect to the
probe page.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.models import Carveout, ExplainRun, RunKind
from labeling.probes import llm
from labeling.probes import services as probe_services

SECTION = "labeling/probes/_carveouts.html"
VIEW = "labeling.view_job"


class LLMActionForm(forms.Form):
    """Ask the LLM for carve-outs and a rewording, or score the signed-off ones."""

    action = forms.ChoiceField(choices=[("ask", "Ask the LLM"), ("score", "Score")])


class CarveoutDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Sign off"), ("reject", "Reject")])


def _get_probe_run(request: AuthedHttpRequest, run_id: int, *perms: str) -> ExplainRun:
    require_perms(request, VIEW, *perms)
    return get_object_or_404(
        ExplainRun.objects.select_related("version"), pk=run_id, kind=RunKind.PROBE
    )


def _answer(
    request: AuthedHttpRequest, run: ExplainRun, *, notice: str = "", error: str = ""
) -> HttpResponse:
    """htmx: the section again, with the outcome in it; else the probe page."""
    if request.htmx:
        run.refresh_from_db()
        context = {
            "llm_section": llm.carveout_section(run, request.user),
            "llm_notice": notice,
            "llm_error": error,
        }
        return render(request, SECTION, context)
    if error:
        messages.error(request, error)
    elif notice:
        messages.info(request, notice)
    return redirect(reverse("labeling:probe", args=[run.version_id]) + "#carveouts")


@login_required
@require_GET
def probe_llm_section(request: AuthedHttpRequest, run_id: int) -> HttpResponse:
    """The section alone: what htmx polls while the LLM writes."""
    run = _get_probe_run(request, run_id)
    return render(request, SECTION, {"llm_section": llm.carveout_section(run, request.user)})


@login_required
@require_POST
def probe_llm_action(request: AuthedHttpRequest, run_id: int) -> HttpResponse:
    form = LLMActionForm(request.POST)
    if not form.is_valid():
        raise BadRequest("This action needs its button on the probe page.")
    run = _get_probe_run(request, run_id, llm.DECIDE_PERM)
    if form.cleaned_data["action"] == "ask":
        if llm.request_probe_llm(run):
            return _answer(request, run, notice="Asked the LLM; this updates by itself.")
        if not llm.llm_available():
            return _answer(request, run, error=llm.NO_BACKEND_MESSAGE)
        return _answer(request, run, error="This probe is not finished, or was already asked.")
    try:
        child = probe_services.start_carveout_run(run, by=request.user)
    except probe_services.ProbeError as exc:
        return _answer(request, run, error=str(exc))
    return _answer(request, run, notice=f"Scoring started (carve-out run {child.attempt}).")


@login_required
@require_POST
def carveout_decide(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    form = CarveoutDecisionForm(request.POST)
    if not form.is_valid():
        raise BadRequest("This action needs its button on the probe page.")
    require_perms(request, VIEW, llm.DECIDE_PERM)
    carveout = get_object_or_404(Carveout.objects.select_related("run__version"), pk=pk)
    approve = form.cleaned_data["decision"] == "approve"
    try:
        llm.decide_carveout(carveout, by=request.user, approve=approve)
    except llm.CarveoutError as exc:
        return _answer(request, carveout.run, error=str(exc))
    notice = "Carve-out signed off." if approve else "Carve-out rejected."
    return _answer(request, carveout.run, notice=notice)


# Included in ``labeling.probes.urls`` (namespace ``labeling``).
llm_urlpatterns = [
    path("probes/<int:run_id>/llm/", probe_llm_section, name="probe_llm"),
    path("probes/<int:run_id>/llm/action/", probe_llm_action, name="probe_llm_action"),
    path("probes/carveouts/<int:pk>/decide/", carveout_decide, name="carveout_decide"),
]
