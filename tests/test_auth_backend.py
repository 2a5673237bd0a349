"""The studio's authentication backend reads a user's permissions in one query."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from policies.roles import REVIEWER, ensure_roles

pytestmark = pytest.mark.django_db


def _fresh(user: Any) -> Any:
    return get_user_model().objects.get(pk=user.pk)  # no permission cache


def test_group_and_own_permissions_in_one_query() -> None:
    ensure_roles()
    user = get_user_model().objects.create_user(username="perm-reader")
    user.groups.add(Group.objects.get(name=REVIEWER))
    own = Permission.objects.get(content_type__app_label="policies", codename="add_policy")
    user.user_permissions.add(own)
    user = _fresh(user)
    with CaptureQueriesContext(connection) as queries:
        assert user.has_perm("labeling.add_decision")  # from the reviewer role
        assert user.has_perm("policies.add_policy")  # given to the user
        assert not user.has_perm("labeling.delete_job")
    assert len(queries) == 1
    # Django's own backend agrees on the whole set.
    from django.contrib.auth.backends import ModelBackend

    assert _fresh(user).get_all_permissions() == ModelBackend().get_all_permissions(_fresh(user))


def test_a_role_taken_away_counts_at_once_and_inactive_users_hold_nothing() -> None:
    ensure_roles()
    user = get_user_model().objects.create_user(username="perm-loser")
    user.groups.add(Group.objects.get(name=REVIEWER))
    assert _fresh(user).has_perm("labeling.add_decision")
    user.groups.clear()
    assert not _fresh(user).has_perm("labeling.add_decision")
    user.groups.add(Group.objects.get(name=REVIEWER))
    user.is_active = False
    user.save()
    assert not _fresh(user).has_perm("labeling.add_decision")
    boss = get_user_model().objects.create_superuser(username="perm-boss", password="x")
    assert _fresh(boss).has_perm("labeling.delete_job")


def test_sessions_made_with_djangos_backend_stay_logged_in(client: Any) -> None:
    # Sessions from before this backend record Django's; a deploy must not log everyone out.
    ensure_roles()
    user = get_user_model().objects.create_user(username="perm-old-session")
    user.groups.add(Group.objects.get(name=REVIEWER))
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    response = client.get("/labeling/review/")
    assert response.status_code == 200 and response.wsgi_request.user == user
