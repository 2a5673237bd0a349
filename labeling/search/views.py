"""The search page: one box, a tab per kind of thing, one page of results per request.

Permissions: each kind shows only to users who may view it (``policies.view_policy``,
``labeling.view_sampleset``, ``labeling.view_item`` with ``view_sampleset``,
``labeling.view_decision``); a kind the user may not view is not offered and answers 403.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from cope_studio.lib.htmx import AuthedHttpRequest
from labeling.search import services
from labeling.search.forms import KINDS, SearchForm
from labeling.search.query import Query

KIND_PERMS: dict[str, tuple[str, ...]] = {
    "items": ("labeling.view_item", "labeling.view_sampleset"),
    "policies": ("policies.view_policy",),
    "sets": ("labeling.view_sampleset",),
    "notes": ("labeling.view_decision",),
}
_SEARCH = {
    "items": services.search_items,
    "policies": services.search_policies,
    "sets": services.search_sample_sets,
    "notes": services.search_notes,
}


def allowed_kinds(request: AuthedHttpRequest) -> list[tuple[str, str]]:
    return [(k, label) for k, label in KINDS if request.user.has_perms(KIND_PERMS[k])]


@login_required
@require_GET
def search(request: AuthedHttpRequest) -> HttpResponse:
    kinds = allowed_kinds(request)
    if not kinds:
        raise PermissionDenied
    form = SearchForm(request.GET)
    data: dict[str, Any] = form.cleaned_data if form.is_valid() else {}
    query: Query = data.get("q") or Query(())
    kind = data.get("kind") or kinds[0][0]
    if kind not in dict(kinds):
        raise PermissionDenied
    page = _SEARCH[kind](query, cursor=data.get("cursor"))
    raw = str(request.GET.get("q", ""))[:300]
    context = {
        "form": form,
        "q": raw,
        "query": query,
        "kind": kind,
        "tabs": [(k, label, urlencode({"q": raw, "kind": k})) for k, label in kinds],
        "page": page,
        "next_query": urlencode({"q": raw, "kind": kind, "cursor": page.next_cursor})
        if page.next_cursor is not None
        else "",
    }
    if request.htmx:
        return render(request, "labeling/search/search.html#results", context)
    return render(request, "labeling/search/search.html", context)
