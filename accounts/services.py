"""Who a single sign-on is: the studio user for a provider's subject, with the roles its groups
give."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction

from accounts.models import ExternalIdentity
from policies.roles import ADMIN, AUTHOR, REVIEWER

ROLES = (AUTHOR, REVIEWER, ADMIN)
_NOT_IN_USERNAME = re.compile(r"[^\w.@+-]")


def role_groups() -> dict[str, str]:
    """Each role and the provider group that gives it (unset: no group gives it)."""
    return {
        AUTHOR: str(settings.COPE_OIDC_AUTHOR_GROUP),
        REVIEWER: str(settings.COPE_OIDC_REVIEWER_GROUP),
        ADMIN: str(settings.COPE_OIDC_ADMIN_GROUP),
    }


def roles_from_claims(claims: Mapping[str, Any]) -> set[str]:
    """The roles a person's groups give. A provider may send one group as a string."""
    raw = claims.get(str(settings.COPE_OIDC_GROUPS_CLAIM))
    if isinstance(raw, str):
        groups = {raw}
    elif isinstance(raw, list | tuple):
        groups = {str(group) for group in raw}
    else:
        groups = set()
    return {role for role, group in role_groups().items() if group and group in groups}


def _free_username(claims: Mapping[str, Any]) -> str:
    """A username from the provider's preferred one (or the email's local part), made unique:
    a local account of that name is left alone, the newcomer gets a suffix."""
    wanted = str(claims.get("preferred_username") or str(claims.get("email", "")).split("@")[0])
    base = _NOT_IN_USERNAME.sub("", wanted)[:140] or "user"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _set_roles(user: User, roles: set[str]) -> None:
    """The role groups become exactly ``roles``; groups that are not roles are left alone."""
    role_rows = list(Group.objects.filter(name__in=ROLES))
    user.groups.remove(*[group for group in role_rows if group.name not in roles])
    user.groups.add(*[group for group in role_rows if group.name in roles])


def sign_in_external(*, issuer: str, claims: Mapping[str, Any]) -> User:
    """The user a provider's verified claims name, created on first sign-in (no usable password:
    they sign in only through the provider, and get no password reset), with their profile and
    roles brought up to date."""
    subject = str(claims["sub"])
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if identity is None:
            user = User(username=_free_username(claims))
            user.set_unusable_password()
            user.save()
            ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        else:
            user = identity.user
        user.email = str(claims.get("email") or user.email)
        user.first_name = str(claims.get("given_name") or user.first_name)[:150]
        user.last_name = str(claims.get("family_name") or user.last_name)[:150]
        user.save(update_fields=["email", "first_name", "last_name"])
        _set_roles(user, roles_from_claims(claims))
    return user
