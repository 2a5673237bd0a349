"""Sending notification work to the ``default`` queue by task name (the tasks live in
``labeling.tasks``). A broker that refuses is logged, not raised: the event and its rows are
already committed, and an email or delivery left pending is visible as such."""

from __future__ import annotations

import logging

from cope_studio.celery import app as celery_app
from worker.contract import DEFAULT_QUEUE

log = logging.getLogger(__name__)

SEND_EMAIL_TASK = "labeling.send_notification_email"
DELIVER_WEBHOOK_TASK = "labeling.deliver_webhook"
RESUME_DELIVERIES_TASK = "labeling.resume_webhook_deliveries"  # in CELERY_BEAT_SCHEDULE


def send_email(notification_id: int) -> None:
    try:
        celery_app.send_task(SEND_EMAIL_TASK, args=[notification_id], queue=DEFAULT_QUEUE)
    except Exception:
        log.warning("notification %s: the broker refused the email", notification_id, exc_info=True)


def send_delivery(delivery_id: int, *, countdown: float = 0.0) -> None:
    try:
        celery_app.send_task(
            DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=DEFAULT_QUEUE, countdown=countdown
        )
    except Exception:
        log.warning("webhook delivery %s: the broker refused it", delivery_id, exc_info=True)
