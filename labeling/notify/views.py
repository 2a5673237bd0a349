"""Notifications (list, mark read, choices), a policy's webhook and delivery log, and a
policy's activity feed.

Permissions: everyone signed in has their own notifications and choices; the activity feed
needs ``policies.view_policy``; a policy's webhook and its delivery log need
``labeling.change_policywebhook`` (admins).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.models import WebhookDelivery
from labeling.notify import feed, preferences, services
from labeling.notify.forms import (
    FeedPageForm,
    MarkReadForm,
    PageForm,
    PreferencesForm,
    WebhookForm,
)
from policies.models import Policy

WEBHOOK_PERM = "labeling.change_policywebhook"
DELIVERIES_SHOWN = 50


@login_required
@require_GET
def notification_list(request: AuthedHttpRequest) -> HttpResponse:
    form = PageForm(request.GET or None)
    before = form.cleaned_data["before"] if form.is_valid() else None
    page = services.notification_page(request.user, before=before)
    return render(request, "labeling/notify/notifications.html", {"page": page})


@login_required
@require_POST
def notification_read(request: AuthedHttpRequest) -> HttpResponse:
    form = MarkReadForm(request.POST)
    if form.is_valid():
        if form.cleaned_data["all"]:
            services.mark_all_read(user=request.user)
        elif form.cleaned_data["notification"]:
            services.mark_read(user=request.user, notification_id=form.cleaned_data["notification"])
    return redirect("labeling:notifications")


@login_required
@require_http_methods(["GET", "POST"])
def notification_settings(request: AuthedHttpRequest) -> HttpResponse:
    choices = preferences.user_choices(request.user)
    form = PreferencesForm(request.POST or None, choices=choices)
    if request.method == "POST" and form.is_valid():
        preferences.save_choices(user=request.user, choices=form.chosen())
        messages.success(request, "Your notification choices are saved.")
        return redirect("labeling:notification_settings")
    rows = [
        (choice, form[f"{choice.kind}__in_app"], form[f"{choice.kind}__email"])
        for choice in choices
    ]
    return render(
        request,
        "labeling/notify/settings.html",
        {"rows": rows, "has_email": bool(request.user.email)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def policy_webhook(request: AuthedHttpRequest, policy_id: int) -> HttpResponse:
    require_perms(request, "policies.view_policy", WEBHOOK_PERM)
    policy = get_object_or_404(Policy, pk=policy_id)
    webhook = services.webhook_of(policy)
    initial = {"url": webhook.url, "enabled": webhook.enabled} if webhook else {"enabled": True}
    form = WebhookForm(request.POST or None, initial=initial)
    secret, status = "", 200
    if request.method == "POST":
        if form.is_valid():
            try:
                webhook, secret = services.save_webhook(
                    policy=policy,
                    url=form.cleaned_data["url"],
                    enabled=form.cleaned_data["enabled"],
                    new_key=form.cleaned_data["new_secret"],
                    by=request.user,
                )
            except ValidationError as exc:
                form.add_error("url", exc)
                status = 400
        else:
            status = 400
    deliveries = []
    if webhook is not None:
        deliveries = list(
            WebhookDelivery.objects.filter(webhook=webhook)
            .select_related("event")
            .prefetch_related("attempt_log")
            .order_by("-created_at", "-id")[:DELIVERIES_SHOWN]
        )
    context = {
        "policy": policy,
        "webhook": webhook,
        "form": form,
        "secret": secret,  # shown once, on the answer that made it
        "deliveries": deliveries,
    }
    return render(request, "labeling/notify/webhook.html", context, status=status)


@login_required
@require_GET
def policy_activity(request: AuthedHttpRequest, policy_id: int) -> HttpResponse:
    require_perms(request, "policies.view_policy")
    policy = get_object_or_404(Policy, pk=policy_id)
    form = FeedPageForm(request.GET or None)
    cursor = form.cleaned_data["after"] if form.is_valid() else ""
    page = feed.feed_page(policy, cursor=cursor)
    context = {"policy": policy, "page": page, "first": not cursor}
    if request.htmx:
        return render(request, "labeling/notify/activity.html#entries", context)
    return render(request, "labeling/notify/activity.html", context)
