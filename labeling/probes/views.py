"""The probe page of a version, and the probe card the version page loads.

Permissions as for jobs: whoever may see jobs sees probes (``labeling.view_job``); authors and
admins start one (``labeling.add_job``) and cancel it (``labeling.change_job``).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from cope_studio.lib.htmx import AuthedHttpRequest, htmx_redirect
from cope_studio.lib.permissions import require_perms
from labeling.probes import pages
from labeling.probes.forms import ProbeActionForm
from labeling.probes.services import ProbeError
from policies.models import Version

PROBE = "labeling/probes/probe.html"
PERMS_FOR = {"start": "labeling.add_job", "cancel": "labeling.change_job"}


def _get_version_for_user(request: AuthedHttpRequest, version_id: int, *perms: str) -> Version:
    require_perms(request, "labeling.view_job", "policies.view_version", *perms)
    return get_object_or_404(Version.objects.select_related("policy"), pk=version_id)


@login_required
@require_http_methods(["GET", "POST"])
def probe_detail(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    """The probe page; its htmx polls get the run's section alone (``#probe``) while a probe
    runs. A POST is a probe button."""
    if request.method == "POST":
        return _probe_post(request, version_id)
    version = _get_version_for_user(request, version_id)
    context = {"page": pages.probe_page(version, request.user), "version": version}
    template = f"{PROBE}#probe" if request.htmx else PROBE
    return render(request, template, context)


def _probe_post(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    form = ProbeActionForm(request.POST)
    if not form.is_valid():
        raise BadRequest("This action needs its button on the probe page.")
    action = form.cleaned_data["action"]
    version = _get_version_for_user(request, version_id, PERMS_FOR[action])
    try:
        notice = pages.probe_action(version, action, request.user)
    except ProbeError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, notice)
    return htmx_redirect(request, reverse("labeling:probe", args=[version.pk]))


@login_required
@require_GET
def probe_card(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    """The version page's probe line (loaded by htmx): the latest steerability and a link."""
    version = _get_version_for_user(request, version_id)
    context = {"card": pages.probe_card(version), "version": version}
    return render(request, f"{PROBE}#probe-card", context)
