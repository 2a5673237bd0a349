"""Which secret keys CoPE Studio refuses to run with when DEBUG is off."""

from __future__ import annotations

MIN_SECRET_KEY_LENGTH = 50
# Keys that appear in examples and tutorials: anyone can sign sessions with them.
KNOWN_WEAK_KEYS = frozenset(
    {"change-me", "changeme", "secret", "insecure-development-key-only-for-debug", "test-only"}
)


def weak_secret_key_reason(key: str) -> str:
    """Why ``key`` is too weak for production, or "" when it is fine."""
    if key.strip().lower() in KNOWN_WEAK_KEYS:
        return f"DJANGO_SECRET_KEY is the published example value {key!r}."
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"DJANGO_SECRET_KEY has {len(key)} characters; use at least {MIN_SECRET_KEY_LENGTH}."
    if len(set(key)) < 5:
        return "DJANGO_SECRET_KEY repeats too few different characters."
    return ""


def refusal_message(reason: str) -> str:
    return (
        f"{reason} Refusing to start with DJANGO_DEBUG off. Make a key with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` (see docs/deploy.md)."
    )
