"""The authentication backend: Django's model backend, with a user's permissions read in one
query, or none.

Every page checks a permission before it loads anything (``lib.permissions``), and Django's
``ModelBackend`` reads the user's own permissions and their groups' in two queries. This one
reads both at once; the request's user is loaded with them, in the same statement
(``load_user``): a page pays one round trip for who is asking and what they may do. What a user
holds is not cached beyond the request (as in Django), so a role taken away counts from the next
request; only the names of permission ids are kept per process.

``ThrottledLoginBackend`` goes first: it refuses every sign-in to a locked-out account or from a
locked-out address (django-axes; see ``cope_studio.lib.login``) before any password is checked.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import JSONField, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest


def _granted(user_id: int) -> QuerySet[Permission]:
    """The permissions a user holds, own or through a group (superusers aside): each link table
    is read once, in its own subquery, never the product of the two."""
    own = Permission.user_set.through.objects.filter(user_id=user_id).values("permission_id")
    member = get_user_model().groups.through.objects.filter(user_id=user_id).values("group_id")
    grouped = Permission.group_set.through.objects.filter(group_id__in=member).values(
        "permission_id"
    )
    return Permission.objects.filter(Q(id__in=own) | Q(id__in=grouped))


def _permissions(user: Any) -> QuerySet[Permission]:
    """Every permission the user has."""
    return Permission.objects.all() if user.is_superuser else _granted(user.pk)


# Permission id -> "app_label.codename", read once per process. The rows are made by migrations
# and not renamed in place; an id not known yet (a permission made since) reads them again.
_names_by_id: dict[int, str] = {}


def _permission_names(ids: Iterable[int]) -> set[str]:
    """The dotted names of these permission ids (ids of no permission are left out)."""
    wanted = set(ids)
    if not wanted <= _names_by_id.keys():
        rows = Permission.objects.values_list("id", "content_type__app_label", "codename")
        _names_by_id.update({pk: f"{app}.{codename}" for pk, app, codename in rows})
    return {_names_by_id[pk] for pk in wanted if pk in _names_by_id}


class _JSONPermissionIds(Subquery):
    """A subquery's ``permission_id`` column as one JSON array (SQLite's ``json_group_array``;
    ``[]`` when it has no row), read back as a list: ``ArraySubquery`` where there are no
    arrays."""

    template = '(SELECT json_group_array("permission_id") FROM (%(subquery)s) AS ids)'
    output_field = JSONField()


def _permission_ids(link_rows: QuerySet[Any]) -> Subquery:
    """The ``permission_id`` of these link-table rows, as a list-valued expression."""
    ids = link_rows.order_by().values("permission_id")
    if connection.vendor == "postgresql":
        return ArraySubquery(ids)
    return _JSONPermissionIds(ids)


@functools.cache
def _users_with_permission_ids() -> QuerySet[Any]:
    """Users with two lists of permission ids, read from the link tables by the user's key: their
    own, and their groups'. Assembled once per process (resolving the two subqueries cost as much
    as the rest of the statement); each request narrows a copy of it to one user."""
    user_model = get_user_model()
    own = Permission.user_set.through.objects.filter(user_id=OuterRef("pk"))
    groups = user_model.groups.through.objects.filter(user_id=OuterRef(OuterRef("pk")))
    grouped = Permission.group_set.through.objects.filter(group_id__in=groups.values("group_id"))
    return user_model._default_manager.annotate(
        _own_ids=_permission_ids(own), _group_ids=_permission_ids(grouped)
    )


def load_user(user_id: Any) -> Any:
    """The user with this id (None when there is none), with their permissions read in the same
    statement and kept as the request's permission cache. A superuser holds every permission:
    theirs are read when first asked, as before.

    The statement reads permission ids (``_users_with_permission_ids``); ids become names
    through ``_permission_names``. Reading the names in the statement (a join with the
    permission and content type tables, spelled as ``app_label.codename``) cost a card a
    millisecond more of building the statement alone. On SQLite the permissions were read
    apart, in a second statement with that join, built anew each time: loading a user and checking
    a permission took 1.2–1.4 ms there, 0.4 ms in one statement."""
    user: Any = _users_with_permission_ids().filter(pk=user_id).first()
    if user is not None and not user.is_superuser:
        user._perm_cache = _permission_names([*user._own_ids, *user._group_ids])
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
