"""The authentication backend: Django's model backend, with a user's permissions read in one
query.

Every page checks a permission before it loads anything (``lib.permissions``), and Django's
``ModelBackend`` reads the user's own permissions and their groups' in two queries. This one
reads both at once; nothing is cached beyond the request (as in Django), so a role taken away
counts from the next request.

``ThrottledLoginBackend`` goes first: it refuses every sign-in to a locked-out account or from a
locked-out address (django-axes; see ``cope_studio.lib.login``) before any password is checked.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet
from django.http import HttpRequest


def _permissions(user: Any) -> QuerySet[Permission]:
    """Every permission the user has, own or through a group: each link table is read once, in
    its own subquery, never the product of the two."""
    if user.is_superuser:
        return Permission.objects.all()
    own = Permission.user_set.through.objects.filter(user_id=user.pk).values("permission_id")
    member = type(user).groups.through.objects.filter(user_id=user.pk).values("group_id")
    grouped = Permission.group_set.through.objects.filter(group_id__in=member).values(
        "permission_id"
    )
    return Permission.objects.filter(Q(id__in=own) | Q(id__in=grouped))


def _read(user: Any) -> list[tuple[str, str]]:
    """(app label, codename) of every permission the user has."""
    rows = (
        _permissions(user).order_by().values_list("content_type__app_label", "codename").distinct()
    )
    return [(str(app), str(codename)) for app, codename in rows]


class StudioModelBackend(ModelBackend):
    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in _read(user_obj)}
        cached: set[str] = user_obj._perm_cache
        return cached


# django-axes ships no type hints; its system check (axes.W003) wants a subclass listed.
class ThrottledLoginBackend(AxesStandaloneBackend):  # type: ignore[misc]
    """Axes' lockout check, also for a sign-in made without a request.

    Every sign-in over HTTP carries its request (the login page, the admin's). A call without one
    (a shell, the test client's ``login()``) has no client address to throttle, and axes would
    refuse it outright; here it is checked against the account's lockout alone, so a locked
    account stays locked on every path.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().authenticate(
            request if request is not None else HttpRequest(), username, password, **kwargs
        )
