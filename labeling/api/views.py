"""API key pages: each user manages their own keys; admins manage everyone's."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.api import keys as api_keys
from labeling.api import live
from labeling.api.forms import ApiKeyForm, ApiKeyRevokeForm, TryForm
from labeling.models import ApiKey
from policies.models import Version

VIEW = "policies.view_policy"


def _is_key_admin(request: AuthedHttpRequest) -> bool:
    return bool(request.user.has_perm(api_keys.ADMIN_PERM))


def _get_key_for_user(request: AuthedHttpRequest, pk: int) -> ApiKey:
    require_perms(request, VIEW)
    api_key = get_object_or_404(ApiKey, pk=pk)
    if api_key.owner_id != request.user.pk and not _is_key_admin(request):
        raise PermissionDenied
    return api_key


@never_cache  # the page that shows a new key once must not be kept by a browser or proxy
@login_required
@require_http_methods(["GET", "POST"])
def apikey_list(request: AuthedHttpRequest) -> HttpResponse:
    require_perms(request, VIEW)
    admin = _is_key_admin(request)
    grantable = api_keys.grantable_scopes(request.user)
    form = ApiKeyForm(request.POST or None, can_choose_owner=admin, scopes=grantable)
    new_key = None
    if request.method == "POST" and form.is_valid():
        owner = form.cleaned_data.get("owner") or request.user
        try:
            new_key = api_keys.create_key(
                owner=owner,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                by=request.user,
                days=form.cleaned_data["lifetime"],
                never_expires=form.cleaned_data["lifetime"] is None,
                policies=list(form.cleaned_data["policies"]),
            )
        except api_keys.ApiKeyError as exc:
            form.add_error(None, str(exc))
        else:
            form = ApiKeyForm(can_choose_owner=admin, scopes=grantable)
    page = Paginator(api_keys.keys_for(request.user, everyone=admin), 50).get_page(
        request.GET.get("page")
    )
    context: dict[str, Any] = {
        "form": form,
        "page": page,
        "new_key": new_key,
        "everyone": admin,
        # What this user can put on their own key (label_text only from an admin).
        "allowed": [s for s in api_keys.allowed_scopes(request.user) if s in grantable],
        "grants_text": api_keys.LABEL_TEXT in grantable,
    }
    status = 422 if request.method == "POST" and new_key is None else 200
    return render(request, "labeling/api/api_keys.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def apikey_revoke(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """GET, or a POST without ``confirm``: ask first (htmx gets the question in place of the
    row's button, a plain request a page). A POST with ``confirm``: revoke."""
    api_key = _get_key_for_user(request, pk)
    form = ApiKeyRevokeForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        if api_keys.revoke_key(api_key=api_key, by=request.user):
            messages.success(request, f"Key “{api_key.name}” ({api_key.prefix}…) revoked.")
        else:
            messages.info(request, f"Key “{api_key.name}” was already revoked.")
        return redirect("labeling:apikey_list")
    template = "labeling/api/apikey_revoke.html"
    if request.htmx:
        template += "#revoke-confirm"
    return render(request, template, {"key": api_key})


TRY_PERMS = ("policies.view_policy", "labeling.add_job")


def _get_version_for_user(request: AuthedHttpRequest, pk: int | None) -> Version | None:
    require_perms(request, *TRY_PERMS)
    if pk is None:
        return None
    return get_object_or_404(Version.objects.select_related("policy"), pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def try_run(request: AuthedHttpRequest) -> HttpResponse:
    """GET: the Try page for a version (``?version=``). POST: try the contents; htmx gets the
    results fragment, a plain POST the whole page with the results."""
    require_perms(request, *TRY_PERMS)
    if request.method == "GET":
        version = _get_version_for_user(request, _int(request.GET.get("version")))
        form = TryForm(initial={"version": version.pk if version else None})
        return render(request, "labeling/api/try.html", _context(form, version, None))
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
    template = "labeling/api/try.html#try-results" if request.htmx else "labeling/api/try.html"
    # htmx swaps only 2xx answers: its form errors come back as 200 with the errors shown.
    status = 200 if form.is_valid() or request.htmx else 422
    return render(request, template, context, status=status)


def _int(value: str | None) -> int | None:
    """A positive id in ASCII digits, else None (``isdigit`` takes '²', which ``int`` does not)."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def _context(
    form: TryForm, version: Version | None, result: live.TryResult | None, *, unsaved: bool = False
) -> dict[str, Any]:
    return {
        "try_form": form,
        "try_version": version,
        "try_result": result,
        "try_unsaved": unsaved,
        "policy": version.policy if version else None,
    }
