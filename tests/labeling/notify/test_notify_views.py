"""The pages: notifications with the unread badge, mark read, choices, a policy's webhook."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.models import (
    EventKind,
    Notification,
    NotificationPreference,
    NotifyEvent,
    PolicyWebhook,
)
from labeling.notify.events import emit
from labeling.notify.services import UNREAD_CAP, unread_count
from tests.conftest import PASSWORD
from tests.labeling.review.test_review import make_job

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _tell(user: Any, n: int, kind: str = EventKind.ASSIGNMENT) -> None:
    for i in range(n):
        emit(key=f"k{user.pk}-{i}", kind=kind, text=f"Event <b>{i}</b>", recipients=[user.pk])


def test_badge_counts_unread_with_one_query(reviewer: Any, django_assert_num_queries: Any) -> None:
    _tell(reviewer, 3)
    client = client_for(reviewer)
    page = client.get(reverse("labeling:sampleset_list")).content.decode()
    assert 'id="unread-count"' in page and ">3</span>" in page
    with django_assert_num_queries(1):
        assert unread_count(reviewer) == 3


def test_badge_stops_counting_at_its_cap(reviewer: Any) -> None:
    """Someone who never reads their notifications does not make each page count them all
    (the template shows ``UNREAD_CAP`` and more as "99+")."""
    assert UNREAD_CAP == 100
    Notification.objects.bulk_create(
        Notification(event=e, user=reviewer, in_app=True)
        for e in NotifyEvent.objects.bulk_create(
            NotifyEvent(key=f"bulk-{i}", kind=EventKind.ASSIGNMENT, text="x") for i in range(105)
        )
    )
    assert unread_count(reviewer) == 100
    page = client_for(reviewer).get(reverse("labeling:sampleset_list")).content.decode()
    assert ">99+</span>" in page and 'aria-label="more than 99 unread"' in page


def test_list_mark_one_and_all_read(reviewer: Any, author: Any) -> None:
    _tell(reviewer, 3)
    _tell(author, 1)
    client = client_for(reviewer)
    page = client.get(reverse("labeling:notifications")).content.decode()
    assert "Event &lt;b&gt;0&lt;/b&gt;" in page  # user-visible text is inert
    first = Notification.objects.filter(user=reviewer).order_by("pk").first()
    assert first is not None
    client.post(reverse("labeling:notification_read"), {"notification": first.pk})
    first.refresh_from_db()
    assert first.read_at is not None
    assert Notification.objects.filter(user=reviewer, read_at__isnull=True).count() == 2
    other = Notification.objects.get(user=author)
    client.post(reverse("labeling:notification_read"), {"notification": other.pk})
    other.refresh_from_db()
    assert other.read_at is None  # another user's notification is not theirs to mark
    client.post(reverse("labeling:notification_read"), {"all": "on"})
    assert not Notification.objects.filter(user=reviewer, read_at__isnull=True).exists()
    page = client.get(reverse("labeling:notifications")).content.decode()
    assert 'id="unread-count"' not in page


def test_mark_read_refuses_get(reviewer: Any) -> None:
    assert client_for(reviewer).get(reverse("labeling:notification_read")).status_code == 405


def test_choices_page_saves_and_shows_defaults(reviewer: Any) -> None:
    client = client_for(reviewer)
    page = client.get(reverse("labeling:notification_settings")).content.decode()
    assert 'name="assignment__email"' in page and 'id="no-email"' in page
    data = {f"{kind}__in_app": "on" for kind in EventKind.values}
    data["queue_emptied__email"] = "on"
    response = client.post(reverse("labeling:notification_settings"), data)
    assert response.status_code == 302
    prefs = {
        p.kind: (p.in_app, p.email) for p in NotificationPreference.objects.filter(user=reviewer)
    }
    assert prefs[EventKind.QUEUE_EMPTIED] == (True, True)
    assert prefs[EventKind.ASSIGNMENT] == (True, False)


def test_webhook_page_admin_only_secret_shown_once(
    author: Any, admin_user: Any, settings: Any
) -> None:
    job = make_job(author=author)
    policy = job.version.policy
    url = reverse("labeling:policy_webhook", args=[policy.pk])
    assert client_for(author).get(url).status_code == 403
    client = client_for(admin_user)
    refused = client.post(url, {"url": "http://127.0.0.1/x", "enabled": "on"})
    assert refused.status_code == 400 and not PolicyWebhook.objects.exists()
    made = client.post(url, {"url": "https://example.org/hook", "enabled": "on"})
    assert made.status_code == 200
    hook = PolicyWebhook.objects.get(policy=policy)
    assert hook.secret in made.content.decode()
    again = client.get(url).content.decode()
    assert hook.secret not in again and hook.masked_secret in again
    assert 'id="no-deliveries"' in again
    detail = client.get(policy.get_absolute_url()).content.decode()
    assert url in detail and reverse("labeling:policy_activity", args=[policy.pk]) in detail


def test_webhook_admin_is_read_only_and_hides_the_secret(author: Any, admin_user: Any) -> None:
    from labeling.notify.services import save_webhook

    job = make_job(author=author)
    hook, secret = save_webhook(
        policy=job.version.policy, url="https://example.org/h", enabled=True, by=admin_user
    )
    assert hook is not None
    admin_user.is_superuser = True
    admin_user.save()
    client = client_for(admin_user)
    page = client.get(reverse("admin:labeling_policywebhook_change", args=[hook.pk]))
    assert page.status_code == 200 and secret not in page.content.decode()
    assert client.get(reverse("admin:labeling_policywebhook_add")).status_code == 403
