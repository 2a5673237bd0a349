"""The authentication backend: Django's model backend, with a user's permissions read in one
query, or none.

Every page checks a permission before it loads anything (``lib.permissions``), and Django's
``ModelBackend`` reads the user's own permissions and their groups' in two queries. This one
reads both at once; on PostgreSQL the request's user is loaded with them, in the same statement
(``load_user``): a page pays one round trip for who is asking and what they may do. Nothing is
cached beyond the request (as in Django), so a role taken away counts from the next request.

``ThrottledLoginBackend`` goes first: it refuses every sign-in to a locked-out account or from a
locked-out address (django-axes; see ``cope_studio.lib.login``) before any password is checked.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import F, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Concat
from django.http import HttpRequest


def _outer(levels: int) -> OuterRef:
    """The primary key of the query ``levels`` subqueries out."""
    ref = OuterRef("pk")
    for _level in range(levels - 1):
        ref = OuterRef(ref)
    return ref


def _granted(user_id: int | None) -> QuerySet[Permission]:
    """The permissions a user holds, own or through a group (superusers aside): each link table
    is read once, in its own subquery, never the product of the two. ``None``: the user of the
    query this one is a subquery of (``load_user``)."""
    user_model = get_user_model()
    own_user = _outer(2) if user_id is None else user_id
    member_user = _outer(3) if user_id is None else user_id
    own = Permission.user_set.through.objects.filter(user_id=own_user).values("permission_id")
    member = user_model.groups.through.objects.filter(user_id=member_user).values("group_id")
    grouped = Permission.group_set.through.objects.filter(group_id__in=member).values(
        "permission_id"
    )
    return Permission.objects.filter(Q(id__in=own) | Q(id__in=grouped))


def _permissions(user: Any) -> QuerySet[Permission]:
    """Every permission the user has."""
    return Permission.objects.all() if user.is_superuser else _granted(user.pk)


def load_user(user_id: Any) -> Any:
    """The user with this id (None when there is none), on PostgreSQL with their permissions
    read in the same statement (an array subquery) and kept as the request's permission cache.
    A superuser holds every permission: theirs are read when first asked, as before."""
    users = get_user_model()._default_manager.all()
    if connection.vendor != "postgresql":
        return users.filter(pk=user_id).first()
    named = (
        _granted(None)
        .order_by()
        .annotate(dotted=Concat(F("content_type__app_label"), Value("."), F("codename")))
        .values("dotted")
    )
    user: Any = users.annotate(_granted_names=ArraySubquery(named)).filter(pk=user_id).first()
    if user is not None and not user.is_superuser:
        user._perm_cache = {str(name) for name in user._granted_names}
    return user


def _read(user: Any) -> list[tuple[str, str]]:
    """(app label, codename) of every permission the user has."""
    rows = (
        _permissions(user).order_by().values_list("content_type__app_label", "codename").distinct()
    )
    return [(str(app), str(codename)) for app, codename in rows]


class StudioModelBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        user = load_user(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None

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
