"""Webhooks against a real local HTTP receiver: signed, retried with backoff while the
receiver is down or failing, each try in the delivery log, delivered once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from labeling.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from labeling.notify import webhooks
from labeling.notify.events import notify_assignment
from labeling.notify.services import save_webhook
from tests.labeling.notify.receiver import receiver_on_free_port, start
from tests.labeling.review.test_review import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast_retries(settings: Any) -> None:
    settings.COPE_WEBHOOK_ALLOW_PRIVATE = True
    settings.COPE_WEBHOOK_MAX_ATTEMPTS = 4
    settings.COPE_WEBHOOK_RETRY_BASE_SECONDS = 0.1


def test_down_then_500_then_200_is_retried_logged_and_delivered_once(
    author: Any,
    reviewer: Any,
    admin_user: Any,
    fast_retries: None,
    inline_notify: list[float],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = make_job(author=author)
    with receiver_on_free_port() as receiver:
        hook, secret = save_webhook(
            policy=job.version.policy, url=receiver.url, enabled=True, by=admin_user
        )
        assert hook is not None and secret.startswith("whsec_")
        # The first try finds the port closed; the receiver comes up before the second, which
        # gets a 500; the third a 200.
        original = webhooks._post

        def post_then_start(url: str, body: bytes, headers: dict[str, str]) -> Any:
            answer = original(url, body, headers)
            if receiver.server is None:
                receiver.statuses = [500]
                start(receiver)
            return answer

        monkeypatch.setattr(webhooks, "_post", post_then_start)
        with django_capture_on_commit_callbacks(execute=True):
            notify_assignment(job=job, assignee=reviewer, task_count=2, batch="1")

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 3
    attempts = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3]
    assert attempts[0].status_code is None and "refused" in attempts[0].error.lower()
    assert attempts[1].status_code == 500 and attempts[2].status_code == 200
    assert attempts[0].next_retry_at and attempts[1].next_retry_at and not attempts[2].next_retry_at
    assert inline_notify == pytest.approx([0.0, 0.1, 0.2], abs=0.01)  # base, then base * 2
    # Delivered once: the receiver answered two POSTs (a 500 and a 200), both signed.
    assert len(receiver.received) == 2
    got = receiver.received[-1]
    assert webhooks.verify_signature(
        secret, got.headers["X-Cope-Timestamp"], got.body, got.headers["X-Cope-Signature"]
    )
    assert not webhooks.verify_signature(
        "whsec_wrong", got.headers["X-Cope-Timestamp"], got.body, got.headers["X-Cope-Signature"]
    )
    body = json.loads(got.body)
    assert "assigned to you" in body["text"] and body["event"] == "assignment"
    assert body["policy"]["id"] == job.version.policy_id
    assert got.headers["X-Cope-Delivery"] == str(delivery.pk)
    # A duplicated task message after the delivery changes nothing.
    assert webhooks.deliver(delivery.pk) == "skipped"
    assert WebhookAttempt.objects.count() == 3


def test_a_receiver_that_never_answers_is_given_up_after_max_attempts(
    author: Any,
    reviewer: Any,
    admin_user: Any,
    fast_retries: None,
    inline_notify: list[float],
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = make_job(author=author)
    with receiver_on_free_port() as receiver:
        save_webhook(policy=job.version.policy, url=receiver.url, enabled=True, by=admin_user)
        with django_capture_on_commit_callbacks(execute=True):
            notify_assignment(job=job, assignee=reviewer, task_count=1, batch="1")
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 4
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 4
    assert inline_notify == pytest.approx([0.0, 0.1, 0.2, 0.4], abs=0.01)


def test_a_duplicated_message_during_a_try_sends_nothing(
    author: Any,
    reviewer: Any,
    admin_user: Any,
    fast_retries: None,
    inline_notify: list[float],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    """A second copy of a try's message arrives while the try is in flight, and again after
    it failed but before the retry is due: neither copy sends."""
    settings.COPE_WEBHOOK_RETRY_BASE_SECONDS = 30
    job = make_job(author=author)
    outcomes: list[str] = []
    original = webhooks._post

    def post_with_duplicate(url: str, body: bytes, headers: dict[str, str]) -> Any:
        outcomes.append(webhooks.deliver(int(headers["X-Cope-Delivery"])))
        return original(url, body, headers)

    with receiver_on_free_port() as receiver:
        save_webhook(policy=job.version.policy, url=receiver.url, enabled=True, by=admin_user)
        monkeypatch.setattr(webhooks, "_post", post_with_duplicate)
        monkeypatch.setattr(webhooks.broker, "send_delivery", lambda pk, countdown=0.0: None)
        notify_assignment(job=job, assignee=reviewer, task_count=1, batch="1")
        delivery = WebhookDelivery.objects.get()
        assert webhooks.deliver(delivery.pk) == "retry"
        assert webhooks.deliver(delivery.pk) == "skipped"  # the retry is not due yet
    assert outcomes == ["skipped"]
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


def test_disabled_or_absent_webhook_sends_nothing(
    author: Any, reviewer: Any, admin_user: Any, fast_retries: None
) -> None:
    job = make_job(author=author)
    notify_assignment(job=job, assignee=reviewer, task_count=1, batch="1")
    save_webhook(
        policy=job.version.policy, url="http://127.0.0.1:9/x", enabled=False, by=admin_user
    )
    notify_assignment(job=job, assignee=reviewer, task_count=1, batch="2")
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "javascript:alert(1)",
        "http://localhost:8000/x",
        "http://127.0.0.1/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "https:///nohost",
    ],
)
def test_urls_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        webhooks.validate_url(url, allow_private=False)


def test_public_urls_accepted_and_private_ones_when_allowed() -> None:
    assert webhooks.validate_url("https://hooks.slack.com/services/T/B/x", allow_private=False)
    assert webhooks.validate_url("http://127.0.0.1:8080/x", allow_private=True)


def test_webhook_changes_are_audited_without_the_secret(author: Any, admin_user: Any) -> None:
    from policies.models import PolicySettingChange

    job = make_job(author=author)
    policy = job.version.policy
    hook, secret = save_webhook(
        policy=policy, url="https://example.org/a", enabled=True, by=admin_user
    )
    assert hook is not None
    _same, none = save_webhook(
        policy=policy, url="https://example.org/b", enabled=False, by=admin_user
    )
    assert none == ""  # the secret is shown only when made
    save_webhook(policy=policy, url="", enabled=False, by=admin_user)
    rows = list(PolicySettingChange.objects.filter(policy=policy).order_by("pk"))
    fields = [(r.field, r.old_value, r.new_value) for r in rows]
    assert ("webhook_url", "", "https://example.org/a") in fields
    assert ("webhook_url", "https://example.org/a", "https://example.org/b") in fields
    assert ("webhook_enabled", "on", "off") in fields
    assert ("webhook_url", "https://example.org/b", "") in fields
    assert all(secret not in r.new_value for r in rows)
    assert all(r.changed_by == admin_user for r in rows)


def test_beat_sends_again_deliveries_whose_message_was_lost(
    author: Any,
    reviewer: Any,
    admin_user: Any,
    fast_retries: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    job = make_job(author=author)
    save_webhook(
        policy=job.version.policy, url="https://example.org/h", enabled=True, by=admin_user
    )
    for batch in ("never-sent", "lost-mid-try", "fresh", "retry-not-due"):
        notify_assignment(job=job, assignee=reviewer, task_count=1, batch=batch)
    rows = {d.event.key.split(":")[-1]: d for d in WebhookDelivery.objects.select_related("event")}
    old = timezone.now() - timedelta(minutes=5)
    WebhookDelivery.objects.filter(pk=rows["never-sent"].pk).update(created_at=old)
    WebhookDelivery.objects.filter(pk=rows["lost-mid-try"].pk).update(
        attempts=1, next_attempt_at=old
    )
    WebhookDelivery.objects.filter(pk=rows["retry-not-due"].pk).update(
        created_at=old, attempts=1, next_attempt_at=timezone.now() + timedelta(minutes=1)
    )
    resent: list[int] = []
    monkeypatch.setattr(
        webhooks.broker, "send_delivery", lambda pk, countdown=0.0: resent.append(pk)
    )
    assert webhooks.resume_deliveries() == 2
    assert sorted(resent) == sorted([rows["never-sent"].pk, rows["lost-mid-try"].pk])


def test_a_webhook_changed_from_the_shell_is_audited_too(author: Any) -> None:
    from labeling.models import PolicyWebhook
    from policies.models import PolicySettingChange, SettingPath

    policy = make_job(author=author).version.policy
    hook = PolicyWebhook.objects.create(policy=policy, url="https://example.org/a", secret="s1234")
    hook.secret = "s5678"
    hook.save()
    hook.delete()
    rows = list(PolicySettingChange.objects.filter(policy=policy).order_by("pk"))
    assert {r.via for r in rows} == {SettingPath.SHELL} and all(r.changed_by is None for r in rows)
    fields = [(r.field, r.old_value, r.new_value) for r in rows]
    assert fields == [
        ("webhook_url", "", "https://example.org/a"),
        ("webhook_enabled", "", "on"),
        ("webhook_secret", "", "…1234"),
        ("webhook_secret", "…1234", "…5678"),
        ("webhook_url", "https://example.org/a", ""),
    ]
