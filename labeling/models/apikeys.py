"""API keys for the labeling API (``labeling.api.keys`` creates, checks and revokes them)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from policies.models import Policy


class ApiKey(models.Model):
    """A key for the labeling API. Only a SHA-256 of the secret is stored; the key itself is
    shown once, when it is created. ``prefix`` (the key's first characters) identifies it on
    pages and in logs."""

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    prefix = models.CharField(max_length=20)
    key_hash = models.CharField(max_length=64, unique=True)
    can_read = models.BooleanField(default=True)
    can_label = models.BooleanField(default=False)
    # Ad-hoc labeling with a ``policy_text`` that was never reviewed: its own scope, off unless
    # granted, because it skips drafting, review and finalize.
    can_label_text = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # None: never expires (only where COPE_API_KEY_ALLOW_NEVER allows it).
    expires_at = models.DateTimeField(null=True, blank=True)
    # Limited to ``policies``; a scoped key whose policies were all deleted reaches none, never
    # all (which an empty set would mean without this flag).
    policy_scoped = models.BooleanField(default=False)
    policies = models.ManyToManyField(Policy, blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def scopes(self) -> list[str]:
        flags = (
            ("read", self.can_read),
            ("label", self.can_label),
            ("label_text", self.can_label_text),
        )
        return [s for s, on in flags if on]
