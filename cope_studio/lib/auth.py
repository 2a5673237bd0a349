"""The authentication backend: Django's model backend, with a user's permissions read in one
query.

Every page checks a permission before it loads anything (``lib.permissions``), and Django's
``ModelBackend`` reads the user's own permissions and their groups' in two queries. This one
reads both at once; nothing is cached beyond the request (as in Django), so a role taken away
counts from the next request.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet


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
