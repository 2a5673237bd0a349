"""Suggested rewrites of a clause: the page, the section htmx loads and polls, the ask button.

Permissions as for what-if edits: whoever may see jobs and versions sees suggestions
(``labeling.view_job``, ``policies.view_version``); those who may start a what-if edit ask
(``labeling.add_job``), since each candidate becomes one. The ask is a POST form: htmx gets the
section back, a plain post a redirect to the page. Nothing here applies a rewrite: that is the
candidate's own what-if page ("Make it a version").
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.whatif import suggest
from policies.models import Version

PAGE = "labeling/whatif/suggestions.html"
SECTION = "labeling/whatif/_suggestions.html#section"
VIEW = ("labeling.view_job", "policies.view_version")


class SuggestForm(forms.Form):
    clause = forms.CharField(max_length=200)

    def clean_clause(self) -> str:
        return str(self.cleaned_data["clause"]).strip()


def _get_version_for_user(request: AuthedHttpRequest, version_id: int, *perms: str) -> Version:
    require_perms(request, *VIEW, *perms)
    return get_object_or_404(Version.objects.select_related("policy"), pk=version_id)


def _clause(request: AuthedHttpRequest, version: Version) -> str:
    """The ``?clause=`` key; 404 for one the version's text lacks."""
    key = request.GET.get("clause", "").strip()
    if suggest.find_clause(version.text, key) is None:
        raise Http404("The version's text has no such clause.")
    return key


def _page_url(version: Version, clause_key: str) -> str:
    return f"{reverse('labeling:suggest', args=[version.pk])}?{urlencode({'clause': clause_key})}"


@login_required
@require_GET
def suggest_page(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    version = _get_version_for_user(request, version_id)
    section = suggest.suggest_section(version, _clause(request, version), request.user)
    return render(request, PAGE, {"version": version, "section": section})


@login_required
@require_GET
def suggest_section(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    """The section alone: what htmx loads into a page and polls while rewrites are written or
    scored."""
    version = _get_version_for_user(request, version_id)
    section = suggest.suggest_section(version, _clause(request, version), request.user)
    return render(request, SECTION, {"section": section})


@login_required
@require_POST
def suggest_ask(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    form = SuggestForm(request.POST)
    if not form.is_valid():
        raise BadRequest("Asking for rewrites needs its button on a what-if page.")
    version = _get_version_for_user(request, version_id, suggest.ASK_PERM)
    key = form.cleaned_data["clause"]
    error = notice = ""
    try:
        suggest.request_suggestions(version, clause_key=key, by=request.user)
        notice = "Asked the LLM for rewrites; this updates by itself."
    except suggest.SuggestError as exc:
        error = str(exc)
    if request.htmx:
        section = suggest.suggest_section(version, key, request.user)
        context = {"section": section, "suggest_notice": notice, "suggest_error": error}
        return render(request, SECTION, context)
    if error:
        messages.error(request, error)
    else:
        messages.info(request, notice)
    return redirect(_page_url(version, key))


# Included in ``labeling.whatif.urls`` (namespace ``labeling``).
suggest_urlpatterns = [
    path("versions/<int:version_id>/suggest/", suggest_page, name="suggest"),
    path("versions/<int:version_id>/suggest/section/", suggest_section, name="suggest_section"),
    path("versions/<int:version_id>/suggest/ask/", suggest_ask, name="suggest_ask"),
]
