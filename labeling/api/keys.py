"""API keys: create (shown once), revoke, authenticate, rate-limit.

A key is ``cope_<8 characters>_<43 characters>``: 32 random bytes after a short prefix that
identifies it on pages. Only SHA-256 of the whole key is stored. A slow password hash (PBKDF2,
argon2) protects *guessable* secrets; a 256-bit random key cannot be guessed however fast the
hash, and a slow hash would cost every API request tens of milliseconds. Looking the hash up
through a unique index also means no key is compared byte by byte in Python.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from labeling.models import ApiKey
from policies.models import Policy

KEY_PREFIX = "cope_"
# ``last_used_at`` is written at most this often per key: a write on every request would cost
# each API call a transaction (and on SQLite, the database's one write lock).
LAST_USED_EVERY = timedelta(minutes=1)
READ, LABEL, LABEL_TEXT = "read", "label", "label_text"
SCOPES = (READ, LABEL, LABEL_TEXT)
# The admin role's own permission: admins create and revoke keys for anyone, and alone grant
# ``label_text``.
ADMIN_PERM = "policies.finalize_version"
# The permission a key's owner needs for each scope, now and at every request. ``label_text``
# labels under a text sent with the request, one no one reviewed or finalized: an author may
# hold it (the Try box already labels their unsaved text), but putting unreviewed text into a
# platform skips the finalize gate, whose keeper is the admin, so only an admin grants it.
SCOPE_PERMS = {
    READ: "policies.view_policy",
    LABEL: "labeling.add_job",
    LABEL_TEXT: "labeling.add_job",
}
# Scopes only a holder of ADMIN_PERM may put on a key (anyone's, their own included).
ADMIN_GRANTED = (LABEL_TEXT,)


class ApiKeyError(ValueError):
    """A key cannot be created or changed; the message is shown to the user."""


class KeyExpired(Exception):
    """The key is valid but past its expiry date: the API answers 401 saying so."""

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(expires_at)
        self.expires_at = expires_at


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def allowed_scopes(user: Any) -> list[str]:
    """The scopes a key of ``user`` may carry: read for every role, label and label_text for
    authors and admins (label_text only when an admin grants it)."""
    if not user.is_active:
        return []
    return [scope for scope in SCOPES if user.has_perm(SCOPE_PERMS[scope])]


def grantable_scopes(by: Any) -> list[str]:
    """The scopes ``by`` may put on a key: label_text only when ``by`` is an admin."""
    admin = bool(by.has_perm(ADMIN_PERM))
    return [scope for scope in SCOPES if admin or scope not in ADMIN_GRANTED]


@dataclass(frozen=True)
class NewKey:
    api_key: ApiKey
    secret: str  # the whole key: shown once, never stored


def lifetime_choices() -> list[int | None]:
    """The lifetimes (days) a new key may be given, None for never (where allowed)."""
    longest = int(settings.COPE_API_KEY_MAX_DAYS)
    days = sorted({d for d in (7, 30, 90, 180, 365) if d <= longest} | {default_lifetime()})
    never: list[int | None] = [None] if settings.COPE_API_KEY_ALLOW_NEVER else []
    return [*days, *never]


def default_lifetime() -> int:
    return min(int(settings.COPE_API_KEY_DEFAULT_DAYS), int(settings.COPE_API_KEY_MAX_DAYS))


def create_key(
    *,
    owner: Any,
    name: str,
    scopes: list[str],
    by: Any,
    days: int | None = None,
    never_expires: bool = False,
    policies: list[Policy] | None = None,
) -> NewKey:
    """Create a key for ``owner`` (``by`` is the owner, or an admin) that expires ``days``
    from now (``COPE_API_KEY_DEFAULT_DAYS`` when not given), or never where
    ``COPE_API_KEY_ALLOW_NEVER`` allows it. ``policies``: the only policies it reaches; none
    given, every policy (the scopes still apply)."""
    if by.pk != owner.pk and not by.has_perm(ADMIN_PERM):
        raise ApiKeyError("Only an admin can create a key for someone else.")
    wanted = [s for s in SCOPES if s in scopes]
    if not wanted:
        raise ApiKeyError("Choose at least one scope.")
    if any(s not in grantable_scopes(by) for s in wanted):
        raise ApiKeyError(
            "Only an admin can grant the label_text scope: it labels under text no one has "
            "reviewed or finalized."
        )
    refused = [s for s in wanted if s not in allowed_scopes(owner)]
    if refused:
        raise ApiKeyError(
            f"{owner.get_username()}'s role does not allow the {', '.join(refused)} scope."
        )
    name = name.strip()
    if not name:
        raise ApiKeyError("Give the key a name, e.g. the service that will use it.")
    expires_at = _expiry(days, never_expires=never_expires)
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            name=name[:100],
            owner=owner,
            prefix=f"{KEY_PREFIX}{prefix}",
            key_hash=hash_key(secret),
            can_read=READ in wanted,
            can_label=LABEL in wanted,
            can_label_text=LABEL_TEXT in wanted,
            created_by=by,
            expires_at=expires_at,
            policy_scoped=bool(policies),
        )
        if policies:
            api_key.policies.set(policies)
    return NewKey(api_key=api_key, secret=secret)


def _expiry(days: int | None, *, never_expires: bool) -> datetime | None:
    if never_expires:
        if not settings.COPE_API_KEY_ALLOW_NEVER:
            raise ApiKeyError(
                "Keys on this studio must expire (COPE_API_KEY_ALLOW_NEVER is off): choose a "
                "lifetime."
            )
        return None
    days = default_lifetime() if days is None else days
    longest = int(settings.COPE_API_KEY_MAX_DAYS)
    if not 1 <= days <= longest:
        raise ApiKeyError(f"A key lives 1 to {longest} days (COPE_API_KEY_MAX_DAYS).")
    return timezone.now() + timedelta(days=days)


def revoke_key(*, api_key: ApiKey, by: Any) -> bool:
    """Revoke a key; returns whether this call revoked it (a revoked key stays revoked)."""
    with transaction.atomic():
        return bool(
            ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
                revoked_at=timezone.now(), revoked_by=by
            )
        )


def keys_for(user: Any, *, everyone: bool = False) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.select_related("owner", "created_by", "revoked_by").prefetch_related(
        "policies"
    )
    return keys if everyone else keys.filter(owner=user)


def authenticate(key: str) -> ApiKey | None:
    """The active key ``key`` is, with its active owner; None for anything else, and
    ``KeyExpired`` for a key past its expiry date. One query (and, at most once a minute per
    key, one update of ``last_used_at``; an expired key's use is not recorded)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    api_key = (
        ApiKey.objects.select_related("owner")
        .filter(key_hash=hash_key(key), revoked_at__isnull=True, owner__is_active=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise KeyExpired(api_key.expires_at)
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_EVERY:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def has_scope(api_key: ApiKey, scope: str) -> bool:
    """The key carries ``scope`` and its owner's role still allows it."""
    granted = {
        READ: api_key.can_read,
        LABEL: api_key.can_label,
        LABEL_TEXT: api_key.can_label_text,
    }[scope]
    return granted and bool(api_key.owner.has_perm(SCOPE_PERMS[scope]))


def reaches_policy(api_key: ApiKey, slug: str) -> bool:
    """The key may touch the policy ``slug`` (an unscoped key reaches every policy). Asked by
    slug before the policy is looked up, so a scoped key learns nothing of other policies."""
    if not api_key.policy_scoped:
        return True
    return api_key.policies.filter(slug=slug).exists()


def scoped_policies(api_key: ApiKey) -> QuerySet[Policy] | None:
    """The policies a scoped key is limited to; None for an unscoped key."""
    return api_key.policies.order_by("slug") if api_key.policy_scoped else None


def rate_limit(api_key: ApiKey) -> int | None:
    """Count one request; None when allowed, else the seconds until the next window.

    A fixed window per key in the Django cache: ``COPE_API_RATE_LIMIT`` requests per
    ``COPE_API_RATE_WINDOW`` seconds.
    """
    window = int(settings.COPE_API_RATE_WINDOW)
    now = timezone.now().timestamp()
    slot = int(now // window)
    cache_key = f"cope:api-rate:{api_key.pk}:{slot}"
    cache.add(cache_key, 0, timeout=window + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # evicted between add and incr
        cache.set(cache_key, 1, timeout=window + 1)
        count = 1
    if count <= int(settings.COPE_API_RATE_LIMIT):
        return None
    return max(1, int((slot + 1) * window - now + 0.999))
