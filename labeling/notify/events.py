"""Every notification goes through ``emit``: one ``NotifyEvent`` row per event (its key is
unique, so a second emit of the same event adds nothing), a ``Notification`` per recipient who
wants it in the app or by email, and a ``WebhookDelivery`` when the event's policy has a webhook.

The rows are written in the caller's transaction: an event whose cause rolls back never
happened, and one that committed always has its rows. Emails and webhook deliveries are sent
by Celery tasks queued once the transaction commits, so a slow mail server or receiver never
holds a request or a result write.

Who is told:

* a job's end (succeeded, partial, failed) and its review queue emptying: the user who started
  the job;
* a version finalized: the policy's creator and everyone who started a job on the policy, but
  not the admin who finalized it;
* an assignment: the reviewer it was given to.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse

from labeling.models import (
    DeliveryStatus,
    EmailStatus,
    EventKind,
    Job,
    JobStatus,
    Notification,
    NotifyEvent,
    PolicyWebhook,
    ReviewStatus,
    ReviewTask,
    WebhookDelivery,
)
from labeling.notify import broker
from labeling.notify.preferences import choices_for
from policies.models import Version

_JOB_KINDS: dict[str, tuple[str, str]] = {
    JobStatus.SUCCEEDED: (EventKind.JOB_SUCCEEDED, "finished"),
    JobStatus.PARTIAL: (EventKind.JOB_PARTIAL, "ended partial"),
    JobStatus.FAILED: (EventKind.JOB_FAILED, "failed"),
}


def absolute_url(path: str) -> str:
    return f"{settings.COPE_PUBLIC_URL}{path}" if path else ""


def emit(
    *,
    key: str,
    kind: str,
    text: str,
    recipients: Iterable[int],
    policy_id: int | None = None,
    path: str = "",
    data: dict[str, Any] | None = None,
) -> NotifyEvent | None:
    """Record the event and tell its recipients and the policy's webhook; None when an event
    with this key was already recorded (nothing more is written or sent)."""
    try:
        with transaction.atomic():
            event = NotifyEvent.objects.create(
                key=key[:200],
                kind=kind,
                policy_id=policy_id,
                text=text[:500],
                path=path,
                data=data or {},
            )
    except IntegrityError:
        return None
    ids = set(recipients)
    emails = dict(User.objects.filter(pk__in=ids, is_active=True).values_list("pk", "email"))
    rows = []
    for user_id, (in_app, email) in choices_for(emails, kind).items():
        wants_email = email and bool(emails[user_id])
        if in_app or wants_email:
            status = EmailStatus.PENDING if wants_email else EmailStatus.NONE
            rows.append(
                Notification(event=event, user_id=user_id, in_app=in_app, email_status=status)
            )
    Notification.objects.bulk_create(rows)
    if any(row.email_status == EmailStatus.PENDING for row in rows):
        transaction.on_commit(partial(_send_emails, event.pk))
    if policy_id is not None:
        _add_delivery(event, policy_id)
    return event


def _send_emails(event_id: int) -> None:
    pending = Notification.objects.filter(event_id=event_id, email_status=EmailStatus.PENDING)
    for notification_id in pending.values_list("pk", flat=True):
        broker.send_email(notification_id)


def _add_delivery(event: NotifyEvent, policy_id: int) -> None:
    webhook = PolicyWebhook.objects.filter(policy_id=policy_id, enabled=True).first()
    if webhook is None:
        return
    delivery = WebhookDelivery.objects.create(
        webhook=webhook,
        event=event,
        status=DeliveryStatus.PENDING,
        max_attempts=settings.COPE_WEBHOOK_MAX_ATTEMPTS,
        base_delay_seconds=settings.COPE_WEBHOOK_RETRY_BASE_SECONDS,
    )
    transaction.on_commit(partial(broker.send_delivery, delivery.pk))


# The events ------------------------------------------------------------------------------


def job_finished(*, job: Job, status: str, finished_at: datetime, stats: dict[str, Any]) -> None:
    """A job reached succeeded, partial or failed. Called by the one writer that moved it there
    (inside its transaction); a job retried and finished again is a new event (its own
    ``finished_at``)."""
    if status not in _JOB_KINDS:
        return
    kind, verb = _JOB_KINDS[status]
    version = (
        Version.objects.select_related("policy")
        .only("number", "policy__name")
        .get(pk=job.version_id)
    )
    mismatches = int(stats.get("disagree") or 0)
    text = f"Job #{job.pk} ({version.policy.name} v{version.number}) {verb}"
    if status != JobStatus.FAILED:
        text += f": {int(stats.get('n') or 0):,} items compared, {mismatches:,} to review"
    emit(
        key=f"job:{job.pk}:{status}:{finished_at.isoformat()}",
        kind=kind,
        text=text + ".",
        recipients=[job.created_by_id],
        policy_id=version.policy_id,
        path=reverse("labeling:job_detail", args=[job.pk]),
        data={"job": job.pk, "version": version.number, "status": status},
    )


def queues_touched(job_ids: Iterable[int]) -> None:
    """Review tasks of these jobs were resolved in the current transaction: once it commits,
    tell each job's starter whose queue has no open or claimed task left.

    Checked after the commit, so the last of two reviewers resolving a job's last two tasks at
    once sees both resolved; both may, and the event's key (the job and its number of resolved
    tasks) keeps it to one.
    """
    ids = sorted(set(job_ids))
    if ids:
        transaction.on_commit(partial(_check_queues, ids))


_WAITING = (ReviewStatus.OPEN, ReviewStatus.CLAIMED, ReviewStatus.ADJUDICATE)


def _check_queues(job_ids: list[int]) -> None:
    """After each decision: one plain read whether each touched job (the decision's, and reruns'
    it was carried to) still has work waiting (nearly always), outside any transaction. On the
    embedded default a transaction takes SQLite's write lock at its start (``transaction_mode``
    IMMEDIATE): one here took that lock after every decision, for a read. Only a queue that looks
    empty is checked again inside one.

    The check is an ``EXISTS`` per job in the select list, which both databases run as a probe of
    the (job, status) index per job; in ``WHERE`` PostgreSQL may plan it as an anti-join, whose
    planning probes the task index's ends."""
    waiting = ReviewTask.objects.filter(job_id=OuterRef("pk"), status__in=_WAITING)
    looks_empty = [
        job_id
        for job_id, has_work in Job.objects.filter(pk__in=job_ids)
        .annotate(has_work=Exists(waiting))
        .values_list("pk", "has_work")
        if not has_work
    ]
    for job_id in looks_empty:
        tasks = ReviewTask.objects.filter(job_id=job_id)
        with transaction.atomic():
            if tasks.filter(status__in=_WAITING).exists():
                continue
            resolved = tasks.filter(status=ReviewStatus.RESOLVED).count()
            job = Job.objects.select_related("version__policy").filter(pk=job_id).first()
            if job is None or resolved == 0:
                continue
            policy = job.version.policy
            emit(
                key=f"job:{job_id}:queue-emptied:{resolved}",
                kind=EventKind.QUEUE_EMPTIED,
                text=(
                    f"Every mismatch of job #{job_id} ({policy.name} v{job.version.number}) "
                    f"is reviewed: {resolved:,} decisions."
                ),
                recipients=[job.created_by_id],
                policy_id=policy.pk,
                path=reverse("labeling:job_detail", args=[job_id]),
                data={"job": job_id, "resolved": resolved},
            )


def version_finalized(*, version: Version, by: User) -> None:
    """A version was finalized (called inside the finalizing transaction)."""
    policy = version.policy
    starters = Job.objects.filter(version__policy=policy).values_list("created_by_id", flat=True)
    recipients = ({policy.created_by_id} | set(starters.distinct())) - {by.pk}
    emit(
        key=f"version:{version.pk}:finalized",
        kind=EventKind.VERSION_FINALIZED,
        text=f"{policy.name} v{version.number} was finalized by {by.get_username()}.",
        recipients=recipients,
        policy_id=policy.pk,
        path=version.get_absolute_url(),
        data={"version": version.number, "by": by.get_username()},
    )


def notify_assignment(
    *, job: Job, assignee: User, task_count: int, batch: str, by: User | None = None
) -> NotifyEvent | None:
    """Tell ``assignee`` that ``task_count`` mismatches of ``job`` were assigned to them.

    Call it inside the transaction that writes the assignment; ``batch`` names that act
    (an assignment row's id, or the time it was made): the same job, assignee and batch is
    one event however often it is emitted.
    """
    version = Version.objects.select_related("policy").get(pk=job.version_id)
    who = f" by {by.get_username()}" if by is not None else ""
    return emit(
        key=f"assignment:{job.pk}:{assignee.pk}:{batch}",
        kind=EventKind.ASSIGNMENT,
        text=(
            f"{task_count:,} mismatch{'es' if task_count != 1 else ''} of job #{job.pk} "
            f"({version.policy.name} v{version.number}) assigned to you{who}."
        ),
        recipients=[assignee.pk],
        policy_id=version.policy_id,
        path=reverse("labeling:queue"),
        data={"job": job.pk, "tasks": task_count},
    )
