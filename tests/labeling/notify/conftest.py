"""Notification work run inline instead of queued: emails sent at once (Django's locmem
backend), webhook tries made at once with their backoff recorded instead of waited."""

from __future__ import annotations

import time
from typing import Any

import pytest


@pytest.fixture
def inline_notify(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[float]:
    """Emails and webhook tries run when queued; returns the countdowns the retries asked for."""
    from labeling.notify import broker, services, webhooks

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    countdowns: list[float] = []

    def send_delivery(delivery_id: int, *, countdown: float = 0.0) -> None:
        countdowns.append(countdown)
        time.sleep(countdown)  # as the queued retry would wait
        webhooks.deliver(delivery_id)

    monkeypatch.setattr(broker, "send_email", services.send_notification_email)
    monkeypatch.setattr(broker, "send_delivery", send_delivery)
    return countdowns
