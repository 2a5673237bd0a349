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
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from cope_studio.lib.db import table


def _read(user: Any) -> list[tuple[str, str]]:
    """(app label, codename) of every permission the user has, own or through a group.

    Written as SQL: every page asks this first, and building the same query through the ORM
    took longer than running it. Each link table is read once in a subquery, never the product
    of the two.
    """
    perm, ctype = table(Permission), table(ContentType)
    sql = (
        f"SELECT DISTINCT c.app_label, p.codename"
        f" FROM {perm} p JOIN {ctype} c ON c.id = p.content_type_id"
    )
    if user.is_superuser:
        params: list[Any] = []
    else:
        own = table(Permission.user_set.through)
        grouped = table(Permission.group_set.through)
        member = table(type(user).groups.through)
        sql += (
            f" WHERE p.id IN (SELECT permission_id FROM {own} WHERE user_id = %s)"
            f" OR p.id IN (SELECT gp.permission_id FROM {grouped} gp"
            f" JOIN {member} ug ON ug.group_id = gp.group_id WHERE ug.user_id = %s)"
        )
        params = [user.pk, user.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(str(app), str(codename)) for app, codename in cursor.fetchall()]


class StudioModelBackend(ModelBackend):
    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in _read(user_obj)}
        cached: set[str] = user_obj._perm_cache
        return cached
