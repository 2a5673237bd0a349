"""API key pages: each user manages their own keys; admins manage everyone's (c-live)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from cope_studio.lib.permissions import require_perms
from labeling import api_keys
from labeling.live_forms import ApiKeyForm, ApiKeyRevokeForm
from labeling.models import ApiKey

VIEW = "policies.view_policy"


def _is_key_admin(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(api_keys.ADMIN_PERM))


def _get_key_for_user(request: HttpRequest, pk: int) -> ApiKey:
    require_perms(request, VIEW)
    api_key = get_object_or_404(ApiKey, pk=pk)
    if api_key.owner_id != request.user.pk and not _is_key_admin(request):
        raise PermissionDenied
    return api_key


@never_cache  # the page that shows a new key once must not be kept by a browser or proxy
@login_required
@require_http_methods(["GET", "POST"])
def apikey_list(request: HttpRequest) -> HttpResponse:
    require_perms(request, VIEW)
    admin = _is_key_admin(request)
    form = ApiKeyForm(request.POST or None, can_choose_owner=admin)
    new_key = None
    if request.method == "POST" and form.is_valid():
        owner = form.cleaned_data.get("owner") or request.user
        try:
            new_key = api_keys.create_key(
                owner=owner,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                by=request.user,
            )
        except api_keys.ApiKeyError as exc:
            form.add_error(None, str(exc))
        else:
            form = ApiKeyForm(can_choose_owner=admin)
    page = Paginator(api_keys.keys_for(request.user, everyone=admin), 50).get_page(
        request.GET.get("page")
    )
    context: dict[str, Any] = {
        "nav": "api",
        "form": form,
        "page": page,
        "new_key": new_key,
        "everyone": admin,
        "allowed": api_keys.allowed_scopes(request.user),
    }
    status = 422 if request.method == "POST" and new_key is None else 200
    return render(request, "labeling/api_keys.html", context, status=status)


@login_required
@require_POST
def apikey_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = _get_key_for_user(request, pk)
    form = ApiKeyRevokeForm(request.POST)
    if form.is_valid() and api_keys.revoke_key(api_key=api_key, by=request.user):
        messages.success(request, f"Key “{api_key.name}” ({api_key.prefix}…) revoked.")
    else:
        messages.info(request, f"Key “{api_key.name}” was already revoked.")
    return redirect("labeling:apikey_list")
