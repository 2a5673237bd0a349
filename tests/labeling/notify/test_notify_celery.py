"""With real Celery workers: a job labeled by the workers tells its starter once and its
policy's webhook once; a webhook whose receiver is down, then fails, is retried by the worker
with backoff until it answers, every try in the log."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.jobs import services
from labeling.models import (
    DeliveryStatus,
    EventKind,
    Job,
    Notification,
    NotifyEvent,
    WebhookAttempt,
    WebhookDelivery,
)
from labeling.notify import webhooks
from labeling.notify.events import notify_assignment
from labeling.notify.services import save_webhook
from tests.labeling.conftest import make_sample_set, make_version, retry_locked, wait_for
from tests.labeling.notify.receiver import receiver_on_free_port, start
from tests.labeling.review.test_review import make_job

pytestmark = pytest.mark.celery_worker

TEXTS = [
    "You are a worthless idiot, Sam, and everyone hates you.",
    "The paper's methodology is weak and the conclusions do not follow.",
    "Lovely weather in Lisbon today.",
    "Shut up, you pathetic loser Alex.",
]


@pytest.mark.django_db(transaction=True)
def test_a_job_finished_by_the_workers_is_told_once_and_posted_once(
    celery_workers: Any, author: Any, admin_user: Any, settings: Any
) -> None:
    settings.COPE_WEBHOOK_ALLOW_PRIVATE = True
    version = make_version(author)
    with receiver_on_free_port() as receiver:
        start(receiver)
        save_webhook(policy=version.policy, url=receiver.url, enabled=True, by=admin_user)
        job = services.start_job(
            version=version,
            sample_set=make_sample_set(author, TEXTS * 2),
            sample_size=None,
            by=author,
            chunk_size=2,
        )

        def finished() -> bool:
            job.refresh_from_db()
            return not job.is_active

        wait_for(finished, timeout=120, what="the job", workers=celery_workers)
        delivered = WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED)
        wait_for(delivered.exists, timeout=30, what="the webhook", workers=celery_workers)
        celery_workers.wait_idle()
    job = Job.objects.get(pk=job.pk)
    events = retry_locked(lambda: list(NotifyEvent.objects.all()))
    assert [e.kind for e in events] == [EventKind.JOB_SUCCEEDED], celery_workers.log_tail()
    assert Notification.objects.get().user == author
    assert len(receiver.received) == 1 and WebhookAttempt.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_worker_retries_a_down_then_failing_receiver_until_delivered(
    celery_workers: Any, author: Any, reviewer: Any, admin_user: Any, settings: Any
) -> None:
    settings.COPE_WEBHOOK_ALLOW_PRIVATE = True
    settings.COPE_WEBHOOK_MAX_ATTEMPTS = 6
    settings.COPE_WEBHOOK_RETRY_BASE_SECONDS = 1.5  # copied onto the delivery: the worker uses it
    job = make_job(author=author)
    with receiver_on_free_port() as receiver:
        hook, secret = save_webhook(
            policy=job.version.policy, url=receiver.url, enabled=True, by=admin_user
        )
        notify_assignment(job=job, assignee=reviewer, task_count=2, batch="real")
        attempts = WebhookAttempt.objects.all()
        wait_for(attempts.exists, timeout=30, what="a first try", interval=0.05)
        receiver.statuses = [500]
        start(receiver)  # up before the second try, which gets a 500
        delivery = WebhookDelivery.objects.get()
        done = WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.DELIVERED)
        wait_for(done.exists, timeout=30, what="the delivery", workers=celery_workers)
        celery_workers.wait_idle()
    log = list(attempts.order_by("number").values_list("number", "status_code", "next_retry_at"))
    assert [(n, code) for n, code, _ in log] == [(1, None), (2, 500), (3, 200)], log
    assert log[0][2] is not None and log[1][2] is not None and log[2][2] is None
    # Backoff: the third try came at least twice the base after the second.
    tries = list(attempts.order_by("number").values_list("started_at", flat=True))
    assert (tries[2] - tries[1]).total_seconds() >= 2 * 1.5 - 0.1
    assert len(receiver.received) == 2  # the 500 and the 200: delivered once
    got = receiver.received[-1]
    assert webhooks.verify_signature(
        secret, got.headers["X-Cope-Timestamp"], got.body, got.headers["X-Cope-Signature"]
    )
