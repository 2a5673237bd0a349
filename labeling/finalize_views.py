"""The finalize panel on the version page and the finalize action (admins only)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cope_studio.lib.permissions import require_perms
from labeling.finalize import NotReady, finalize, finalize_readiness
from labeling.finalize_forms import FinalizeForm
from policies.models import Version
from policies.services import PolicyError

FINALIZE = "labeling/review_finalize.html"


def _finalize_context(request: HttpRequest, version: Version, error: str = "") -> dict[str, Any]:
    return {
        "version": version,
        "readiness": finalize_readiness(version),
        "can_finalize": request.user.has_perm("policies.finalize_version"),
        "threshold_percent": version.policy.agreement_threshold * 100,
        "error": error,
        "form": FinalizeForm(),
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
