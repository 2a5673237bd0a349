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


def test_the_requests_user_comes_with_their_permissions() -> None:
    """The session's user and their permissions are one statement, on both databases (every
    page checks a permission first)."""
    from accounts.oidc import OIDCBackend
    from cope_studio.lib.auth import StudioModelBackend

    ensure_roles()
    user = get_user_model().objects.create_user(username="perm-loaded")
    user.groups.add(Group.objects.get(name=REVIEWER))
    own = Permission.objects.get(content_type__app_label="policies", codename="add_policy")
    user.user_permissions.add(own)
    expected = {"labeling.add_decision", "policies.add_policy"}
    from django.contrib.auth.backends import ModelBackend

    whole = ModelBackend().get_all_permissions(_fresh(user))
    StudioModelBackend().get_user(user.pk)  # the permissions' names, read once per process
    for backend in (StudioModelBackend(), OIDCBackend()):
        with CaptureQueriesContext(connection) as queries:
            loaded = backend.get_user(user.pk)
            assert loaded == user and expected <= loaded.get_all_permissions()
            assert loaded.get_all_permissions() == whole
            assert not loaded.has_perm("labeling.delete_job")
        assert len(queries) == 1
    # A role taken away counts from the next load; a superuser still holds everything.
    user.groups.clear()
    assert not StudioModelBackend().get_user(user.pk).has_perm("labeling.add_decision")
    boss = get_user_model().objects.create_superuser(username="perm-loaded-boss", password="x")
    assert StudioModelBackend().get_user(boss.pk).has_perm("labeling.delete_job")
    # Inactive accounts are not the request's user; a missing one is nobody.
    user.is_active = False
    user.save()
    assert StudioModelBackend().get_user(user.pk) is None
    assert StudioModelBackend().get_user(10**9) is None


def test_a_page_reads_who_asks_and_what_they_may_do_at_once(client: Any) -> None:
    ensure_roles()
    user = get_user_model().objects.create_user(username="perm-page")
    user.groups.add(Group.objects.get(name=REVIEWER))
    client.force_login(user, backend="cope_studio.lib.auth.StudioModelBackend")
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/labeling/review/").status_code == 200
    permission_reads = [q for q in queries if "_permission" in q["sql"]]
    assert len(permission_reads) == 1
    assert '"auth_user"."id" = ' in permission_reads[0]["sql"]  # in the user's statement


def test_permission_names_are_read_once_per_process_and_again_for_a_new_permission() -> None:
    from django.contrib.contenttypes.models import ContentType

    from cope_studio.lib import auth

    ensure_roles()
    user = get_user_model().objects.create_user(username="perm-names")
    user.groups.add(Group.objects.get(name=REVIEWER))
    user.user_permissions.add(Permission.objects.get(codename="add_policy"))
    auth._names_by_id.clear()
    backend = auth.StudioModelBackend()
    with CaptureQueriesContext(connection) as first:
        assert backend.get_user(user.pk).has_perm("labeling.add_decision")
    with CaptureQueriesContext(connection) as second:
        assert backend.get_user(user.pk).has_perm("labeling.add_decision")
    assert (len(first), len(second)) == (2, 1)
    # A permission made after the names were read is found (its id is new: they are read again).
    made = Permission.objects.create(
        codename="audit_things",
        name="Can audit things",
        content_type=ContentType.objects.get(app_label="labeling", model="job"),
    )
    user.user_permissions.add(made)
    assert backend.get_user(user.pk).has_perm("labeling.audit_things")
    assert backend.get_user(user.pk).has_perm("policies.add_policy")  # own and through a group
    user.user_permissions.remove(made)
    assert not backend.get_user(user.pk).has_perm("labeling.audit_things")
    user.groups.clear()
    user.user_permissions.clear()
    nobody = backend.get_user(user.pk)  # no permission at all: empty lists, not missing ones
    assert nobody is not None and nobody.get_all_permissions() == set()
