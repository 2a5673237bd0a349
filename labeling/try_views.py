"""The Try box: label pasted contents under A and B now, on the model workers (c-live).

Who may try: authors and admins (``labeling.add_job``, the permission to run jobs): a try runs
on the same workers as jobs, ahead of them. Reviewers judge labels but do not run the model.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from cope_studio.lib.permissions import require_perms
from labeling import live
from labeling.live_forms import TryForm
from policies.models import Version

TRY_PERMS = ("policies.view_policy", "labeling.add_job")


def _get_version_for_user(request: HttpRequest, pk: int | None) -> Version | None:
    require_perms(request, *TRY_PERMS)
    if pk is None:
        return None
    return get_object_or_404(Version.objects.select_related("policy"), pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def try_run(request: HttpRequest) -> HttpResponse:
    """GET: the Try page for a version (``?version=``). POST: try the contents; htmx gets the
    results fragment, a plain POST the whole page with the results."""
    require_perms(request, *TRY_PERMS)
    if request.method == "GET":
        version = _get_version_for_user(request, _int(request.GET.get("version")))
        form = TryForm(initial={"version": version.pk if version else None})
        return render(request, "labeling/try.html", _context(form, version, None))
    form = TryForm(request.POST)
    version = _get_version_for_user(request, _int(request.POST.get("version")))
    result = None
    unsaved = False
    if form.is_valid():
        data = form.cleaned_data
        unsaved = bool(data["text"].strip())
        if unsaved:
            text_a, text_b = data["text"], data["twin_text"]
        else:
            assert version is not None  # the form requires text or a version
            text_a, text_b = version.text, version.twin_text
        result = live.try_contents(text_a=text_a, text_b=text_b, contents=data["content_list"])
    context = _context(form, version, result, unsaved=unsaved)
    template = "labeling/try.html#try-results" if request.htmx else "labeling/try.html"
    # htmx swaps only 2xx answers: its form errors come back as 200 with the errors shown.
    status = 200 if form.is_valid() or request.htmx else 422
    return render(request, template, context, status=status)


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _context(
    form: TryForm, version: Version | None, result: live.TryResult | None, *, unsaved: bool = False
) -> dict[str, Any]:
    return {
        "nav": "policies",
        "try_form": form,
        "try_version": version,
        "try_result": result,
        "try_unsaved": unsaved,
        "policy": version.policy if version else None,
    }
