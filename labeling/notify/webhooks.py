"""Outgoing webhooks: a policy's events POSTed as Slack-compatible JSON, signed, retried.

The body is JSON with ``text`` (what Slack's incoming webhooks show) and structured fields:
``event`` (its kind), ``id``, ``policy`` (id and name), ``url`` and ``data``. Each request
carries

* ``X-Cope-Event``: the kind, ``X-Cope-Delivery``: the delivery's id (the same on every retry);
* ``X-Cope-Timestamp``: Unix seconds when this attempt was signed;
* ``X-Cope-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with the webhook's secret, of
  ``timestamp + "." + body`` (the raw bytes received).

A receiver verifies as with Stripe or Slack: recompute the HMAC over the timestamp header, a
dot and the raw body, compare in constant time (``verify_signature``), and refuse timestamps
older than a few minutes (replays).

A delivery is tried up to its ``max_attempts``; after a failed try (no answer, a timeout, any
status outside 2xx) the next one is due after ``base_delay_seconds * 2**(tries - 1)``. Every try
is a ``WebhookAttempt`` row. A try is claimed with a conditional UPDATE of the attempt counter,
so a duplicated task message cannot send the same try twice, nor the next one before it is due.
Celery beat's ``resume_deliveries`` sends again the deliveries whose message was lost (a broker
that refused it, a worker lost in the middle of a try): those pending well past their time.
Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from labeling.models import DeliveryStatus, NotifyEvent, WebhookAttempt, WebhookDelivery
from labeling.notify import broker
from labeling.notify.events import absolute_url

SIGNATURE_HEADER = "X-Cope-Signature"
TIMESTAMP_HEADER = "X-Cope-Timestamp"
EVENT_HEADER = "X-Cope-Event"
DELIVERY_HEADER = "X-Cope-Delivery"
# A retry's message may run this much before its recorded time (clocks of two hosts).
_EARLY = timedelta(seconds=1)


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def validate_url(url: str, *, allow_private: bool | None = None) -> str:
    """http(s) only, with a host. Unless ``COPE_WEBHOOK_ALLOW_PRIVATE``, a host written as a
    loopback, private, link-local or reserved IP address (or ``localhost``) is refused. A name
    that resolves to such an address is not caught here: keep the studio's outgoing traffic
    behind a firewall where that matters."""
    allow = settings.COPE_WEBHOOK_ALLOW_PRIVATE if allow_private is None else allow_private
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Use an http:// or https:// URL with a host name.")
    if allow:
        return url.strip()
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        raise ValidationError("A webhook cannot point at this machine (localhost).")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url.strip()
    if not address.is_global:
        raise ValidationError(
            "A webhook cannot point at a private, loopback or reserved address "
            "(COPE_WEBHOOK_ALLOW_PRIVATE=true allows it)."
        )
    return url.strip()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def payload(event: NotifyEvent) -> dict[str, Any]:
    policy = event.policy
    return {
        "text": event.text,
        "event": event.kind,
        "id": event.key,
        "policy": {"id": policy.pk, "name": policy.name} if policy is not None else None,
        "url": absolute_url(event.path),
        "created_at": event.created_at.isoformat(),
        "data": event.data,
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """(status code, error); a status is None when no answer came."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=settings.COPE_WEBHOOK_TIMEOUT_SECONDS) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        return int(exc.code), f"HTTP {exc.code} {exc.reason}"[:500]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"[:500]


def retry_delay(delivery: WebhookDelivery, tries: int) -> float:
    """Seconds before the try after ``tries`` failed ones."""
    return float(delivery.base_delay_seconds) * float(2 ** (tries - 1))


def deliver(delivery_id: int) -> str:
    """Make the delivery's next try; returns what happened ("delivered", "retry", "failed",
    or "skipped" when it is done already or another worker holds this try)."""
    row = (
        WebhookDelivery.objects.select_related("webhook", "event__policy")
        .filter(pk=delivery_id)
        .first()
    )
    if row is None or row.status != DeliveryStatus.PENDING or row.attempts >= row.max_attempts:
        return "skipped"
    # A try is due once its time has come (the first at once): a duplicated message arriving
    # while a try is in flight, or before a retry's time, sends nothing.
    if row.next_attempt_at is not None and row.next_attempt_at > timezone.now() + _EARLY:
        return "skipped"
    number = row.attempts + 1
    # Until this try is recorded, the next one is due only after the receiver's time limit
    # and a margin: a try lost with its worker is made again by ``resume_deliveries``.
    lost_after = timezone.now() + timedelta(seconds=settings.COPE_WEBHOOK_TIMEOUT_SECONDS + 60)
    claimed = WebhookDelivery.objects.filter(
        pk=row.pk, status=DeliveryStatus.PENDING, attempts=row.attempts
    ).update(attempts=number, next_attempt_at=lost_after)
    if claimed != 1:
        return "skipped"
    body = json.dumps(payload(row.event), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "CoPE-Studio-Webhook/1",
        EVENT_HEADER: row.event.kind,
        DELIVERY_HEADER: str(row.pk),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(row.webhook.secret, timestamp, body),
    }
    started_at = timezone.now()
    clock = time.perf_counter()
    code, error = _post(row.webhook.url, body, headers)
    duration_ms = int((time.perf_counter() - clock) * 1000)
    return _record(row, number, started_at, duration_ms, code, error)


def _record(
    row: WebhookDelivery,
    number: int,
    started_at: Any,
    duration_ms: int,
    code: int | None,
    error: str,
) -> str:
    ok = code is not None and 200 <= code < 300
    now = timezone.now()
    retry_at = None
    if not ok and number < row.max_attempts:
        retry_at = now + timedelta(seconds=retry_delay(row, number))
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=row,
            number=number,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=code,
            error="" if ok else (error or f"HTTP {code}"),
            next_retry_at=retry_at,
        )
        if ok:
            update: dict[str, Any] = {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
        elif retry_at is None:
            update = {"status": DeliveryStatus.FAILED}
        else:
            update = {}
        WebhookDelivery.objects.filter(pk=row.pk).update(next_attempt_at=retry_at, **update)
        if retry_at is not None:
            delay = (retry_at - now).total_seconds()
            transaction.on_commit(lambda: broker.send_delivery(row.pk, countdown=delay))
    return "delivered" if ok else ("retry" if retry_at is not None else "failed")


# A pending delivery this late was lost (its message, or its worker mid-try).
RESUME_AFTER = timedelta(seconds=60)


def resume_deliveries() -> int:
    """Run by beat: send again each pending delivery whose next try is more than
    ``RESUME_AFTER`` late, or that was never tried that long after it was made. Returns how
    many. A copy of a message that was only slow finds its try claimed and sends nothing."""
    late = timezone.now() - RESUME_AFTER
    ids = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)
        .filter(
            Q(next_attempt_at__lte=late) | Q(next_attempt_at__isnull=True, created_at__lte=late)
        )
        .values_list("pk", flat=True)[:1000]
    )
    for delivery_id in ids:
        broker.send_delivery(delivery_id)
    return len(ids)
