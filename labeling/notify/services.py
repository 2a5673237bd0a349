"""What a person does with notifications (read them, mark them read), the email of one
notification, and a policy's webhook settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from labeling.models import EmailStatus, Notification, PolicyWebhook
from labeling.notify.events import absolute_url
from labeling.notify.webhooks import new_secret, validate_url
from policies.models import Policy, SettingPath

log = logging.getLogger(__name__)

PAGE_SIZE = 50


# The badge counts this many unread notifications at most (then shows "99+"): a person who never
# reads them must not make every page count their whole history.
UNREAD_CAP = 100


def unread_count(user: User) -> int:
    """The badge's number, up to ``UNREAD_CAP``: one capped count on the partial index of
    unread in-app rows."""
    unread = Notification.objects.filter(user=user, in_app=True, read_at__isnull=True)
    return unread.values("pk")[:UNREAD_CAP].count()


@dataclass(frozen=True)
class NotificationPage:
    rows: list[Notification]
    next_before: int | None


def notification_page(user: User, *, before: int | None = None) -> NotificationPage:
    """The user's in-app notifications, newest first, ``PAGE_SIZE`` at a time (keyset on id)."""
    rows: QuerySet[Notification] = (
        Notification.objects.filter(user=user, in_app=True).select_related("event").order_by("-id")
    )
    if before is not None:
        rows = rows.filter(pk__lt=before)
    page = list(rows[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return NotificationPage(page, page[-1].pk if more and page else None)


def mark_read(*, user: User, notification_id: int) -> bool:
    return bool(
        Notification.objects.filter(pk=notification_id, user=user, read_at__isnull=True).update(
            read_at=timezone.now()
        )
    )


def mark_all_read(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )


def send_notification_email(notification_id: int) -> str:
    """Send one notification's email, once: the row moves pending → sending before the mail
    goes, so a duplicated task finds nothing to do. A refused mail goes back to pending and the
    error is raised for the task to retry; a worker lost mid-send leaves it "sending"."""
    claimed = Notification.objects.filter(
        pk=notification_id, email_status=EmailStatus.PENDING
    ).update(email_status=EmailStatus.SENDING)
    if claimed != 1:
        return "skipped"
    row = Notification.objects.select_related("event", "user").get(pk=notification_id)
    link = absolute_url(row.event.path)
    body = f"{row.event.text}\n\n{link}\n\n" if link else f"{row.event.text}\n\n"
    body += f"Change what you are told about: {absolute_url('/labeling/notifications/settings/')}"
    try:
        send_mail(
            subject=f"[CoPE Studio] {row.event.text}"[:150],
            message=body,
            from_email=None,
            recipient_list=[row.user.email],
        )
    except Exception as exc:
        Notification.objects.filter(pk=notification_id).update(
            email_status=EmailStatus.PENDING, email_error=str(exc)[:500]
        )
        raise
    Notification.objects.filter(pk=notification_id).update(
        email_status=EmailStatus.SENT, email_error=""
    )
    return "sent"


def mark_email_failed(notification_id: int, error: str) -> None:
    Notification.objects.filter(pk=notification_id, email_status=EmailStatus.PENDING).update(
        email_status=EmailStatus.FAILED, email_error=error[:500]
    )


# A policy's webhook ------------------------------------------------------------------------


def webhook_of(policy: Policy) -> PolicyWebhook | None:
    return PolicyWebhook.objects.filter(policy=policy).first()


def save_webhook(
    *, policy: Policy, url: str, enabled: bool, by: User, new_key: bool = False
) -> tuple[PolicyWebhook | None, str]:
    """Set, change or (an empty ``url``) remove the policy's webhook; returns the webhook and
    its secret when one was made now (shown once), else "". ``PolicyWebhook.save`` and
    ``delete`` audit each change."""
    url = validate_url(url) if url.strip() else ""
    with transaction.atomic():
        Policy.objects.select_for_update().filter(pk=policy.pk).first()
        current = PolicyWebhook.objects.filter(policy=policy).first()
        if not url:
            if current is not None:
                current.delete(changed_by=by, via=SettingPath.SETTINGS)
            return None, ""
        if current is None:
            current = PolicyWebhook(policy=policy)
            new_key = True
        secret = ""
        if new_key:
            secret = current.secret = new_secret()
        current.url, current.enabled, current.updated_by = url, enabled, by
        current.save(changed_by=by, via=SettingPath.SETTINGS)
    return current, secret
