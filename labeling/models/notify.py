"""Notifications: events, who was told (in app, by email), per-user choices, and per-policy
webhooks with their delivery log (``labeling.notify``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models, transaction
from django.db.models import Q

from policies.models import Policy, PolicySettingChange, SettingPath


class EventKind(models.TextChoices):
    JOB_SUCCEEDED = "job_succeeded", "A job I started finished"
    JOB_PARTIAL = "job_partial", "A job I started ended partial"
    JOB_FAILED = "job_failed", "A job I started failed"
    QUEUE_EMPTIED = "queue_emptied", "The review queue of a job I started emptied"
    VERSION_FINALIZED = "version_finalized", "A version of a policy I work on was finalized"
    ASSIGNMENT = "assignment", "Mismatches were assigned to me"


# Email is on by default only for what a person waits for: their own job's end, and work given
# to them. In-app is on for every kind.
EMAIL_BY_DEFAULT = frozenset(
    {EventKind.JOB_SUCCEEDED, EventKind.JOB_PARTIAL, EventKind.JOB_FAILED, EventKind.ASSIGNMENT}
)


class NotifyEvent(models.Model):
    """One thing that happened, once: ``key`` is unique, so a second emit of the same event
    (a duplicated delivery, two writers racing to the same state) adds nothing."""

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    policy = models.ForeignKey(
        Policy, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    text = models.CharField(max_length=500)
    # Path inside the studio (``/labeling/jobs/3/``); made absolute with COPE_PUBLIC_URL.
    path = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


class EmailStatus(models.TextChoices):
    NONE = "none", "Not sent (not wanted)"
    PENDING = "pending", "Waiting to be sent"
    SENDING = "sending", "Being sent"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """An event as one user sees it: in the app (unless they turned it off) and by email."""

    event = models.ForeignKey(NotifyEvent, on_delete=models.CASCADE, related_name="notifications")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    in_app = models.BooleanField(default=True)
    read_at = models.DateTimeField(null=True, blank=True)
    email_status = models.CharField(
        max_length=10, choices=EmailStatus.choices, default=EmailStatus.NONE
    )
    email_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "user"], name="notification_once_per_user")
        ]
        indexes = [
            # The badge on every page counts only these rows.
            models.Index(
                fields=["user"],
                name="notification_unread",
                condition=Q(read_at__isnull=True, in_app=True),
            ),
            models.Index(fields=["user", "-created_at", "-id"], name="notification_user_time"),
        ]

    def __str__(self) -> str:
        return f"Notification {self.pk} for user {self.user_id}"


class NotificationPreference(models.Model):
    """A user's choice for one kind of event; no row means the defaults (``EMAIL_BY_DEFAULT``)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_prefs"
    )
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    in_app = models.BooleanField(default=True)
    email = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="notification_pref_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind}: in-app {self.in_app}, email {self.email}"


class PolicyWebhook(models.Model):
    """A policy's outgoing webhook: every event of the policy is POSTed to ``url``, signed with
    ``secret`` (``labeling.notify.webhooks``).

    Audited like the policy's gate settings, by ``save`` and ``delete`` themselves whatever
    called them: a ``PolicySettingChange`` per changed field (``webhook_url``,
    ``webhook_enabled``, ``webhook_secret``: never the secret itself), with the user and path
    passed as ``save(changed_by=..., via=...)`` (none and "shell" when not given).
    """

    policy = models.OneToOneField(Policy, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Webhook of policy {self.policy_id} → {self.url}"

    def save(
        self,
        *args: Any,
        changed_by: User | None = None,
        via: str = SettingPath.SHELL,
        **kwargs: Any,
    ) -> None:
        with transaction.atomic():
            # (url, enabled, secret) as stored; a new webhook had none of them.
            before: tuple[str, bool | None, str] = ("", None, "")
            if self.pk is not None:
                row = (
                    PolicyWebhook.objects.select_for_update()
                    .filter(pk=self.pk)
                    .values_list("url", "enabled", "secret")
                    .first()
                )
                if row is not None:
                    before = (str(row[0]), bool(row[1]), str(row[2]))
            super().save(*args, **kwargs)
            changes = [
                ("webhook_url", before[0], self.url),
                ("webhook_enabled", _on(before[1]), _on(self.enabled)),
                ("webhook_secret", _masked(before[2]), _masked(self.secret)),
            ]
            self._audit(changes, changed_by, via)

    def delete(
        self, *args: Any, changed_by: User | None = None, via: str = SettingPath.SHELL, **kw: Any
    ) -> tuple[int, dict[str, int]]:
        with transaction.atomic():
            self._audit([("webhook_url", self.url, "")], changed_by, via)
            return super().delete(*args, **kw)

    def _audit(self, changes: list[tuple[str, str, str]], by: User | None, via: str) -> None:
        PolicySettingChange.objects.bulk_create(
            [
                PolicySettingChange(
                    policy_id=self.policy_id,
                    field=field,
                    old_value=old[:300],
                    new_value=new[:300],
                    changed_by=by,
                    via=via,
                )
                for field, old, new in changes
                if old != new
            ]
        )

    @property
    def masked_secret(self) -> str:
        return _masked(self.secret)


def _masked(secret: str) -> str:
    return f"…{secret[-4:]}" if secret else ""


def _on(value: bool | None) -> str:
    return "" if value is None else ("on" if value else "off")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One event to one webhook, tried up to ``max_attempts`` times with exponential backoff.

    The schedule (attempts, base delay) is copied from the settings when the event happens, so
    the process that sends it, and a later settings change, do not change an event's schedule.
    """

    webhook = models.ForeignKey(PolicyWebhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(NotifyEvent, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField()
    base_delay_seconds = models.FloatField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["webhook", "event"], name="webhook_delivery_once")
        ]
        indexes = [
            models.Index(fields=["webhook", "-created_at", "-id"], name="delivery_time"),
            # Beat's look for lost deliveries reads only the pending ones.
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_pending",
                condition=Q(status="pending"),
            ),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"Delivery {self.pk} of event {self.event_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: what the receiver answered (or the error), how long it took, and
    when the next try is due (empty when there is none)."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_once")
        ]

    def __str__(self) -> str:
        return f"Attempt {self.number} of delivery {self.delivery_id}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
