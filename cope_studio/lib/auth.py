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
from django.db.models import Q


class StudioModelBackend(ModelBackend):
    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            # Each link table read once in a subquery, never the product of the two.
            own = Permission.user_set.through.objects.filter(user_id=user_obj.pk)
            grouped = Permission.group_set.through.objects.filter(group__user=user_obj)
            perms = (
                Permission.objects.all()
                if user_obj.is_superuser
                else Permission.objects.filter(
                    Q(pk__in=own.values("permission_id"))
                    | Q(pk__in=grouped.values("permission_id"))
                )
            )
            rows = perms.values_list("content_type__app_label", "codename").order_by().distinct()
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in rows}
        cached: set[str] = user_obj._perm_cache
        return cached
