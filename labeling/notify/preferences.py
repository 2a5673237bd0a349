"""Who wants what: per-user choices for each kind of event, with the defaults for no choice."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction

from labeling.models import EMAIL_BY_DEFAULT, EventKind, NotificationPreference


@dataclass(frozen=True)
class Choice:
    kind: str
    label: str
    in_app: bool
    email: bool


def default_choice(kind: str) -> tuple[bool, bool]:
    """(in app, email) for a user who never chose."""
    return True, kind in EMAIL_BY_DEFAULT


def choices_for(user_ids: Iterable[int], kind: str) -> dict[int, tuple[bool, bool]]:
    """Each user's (in app, email) for ``kind``: one query whatever the number of users."""
    ids = list(user_ids)
    chosen = {
        user_id: (in_app, email)
        for user_id, in_app, email in NotificationPreference.objects.filter(
            user_id__in=ids, kind=kind
        ).values_list("user_id", "in_app", "email")
    }
    return {user_id: chosen.get(user_id, default_choice(kind)) for user_id in ids}


def user_choices(user: User) -> list[Choice]:
    """Every kind with the user's choice (or the default), in the order the page shows them."""
    chosen = {
        kind: (in_app, email)
        for kind, in_app, email in NotificationPreference.objects.filter(user=user).values_list(
            "kind", "in_app", "email"
        )
    }
    return [
        Choice(kind, str(label), *chosen.get(kind, default_choice(kind)))
        for kind, label in EventKind.choices
    ]


def save_choices(*, user: User, choices: dict[str, tuple[bool, bool]]) -> None:
    """Store the user's (in app, email) per kind; unknown kinds are refused."""
    unknown = set(choices) - set(EventKind.values)
    if unknown:
        raise ValueError(f"Unknown kinds of event: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        NotificationPreference.objects.bulk_create(
            [
                NotificationPreference(user=user, kind=kind, in_app=in_app, email=email)
                for kind, (in_app, email) in choices.items()
            ],
            update_conflicts=True,
            unique_fields=["user", "kind"],
            update_fields=["in_app", "email"],
        )
