"""API keys that age: an expiry date chosen at creation, a per-policy scope, last use shown.

Every endpoint family (policy list, one policy, its versions, one version, ``/api/v1/label``,
the Zentropi-shaped ``/v1/label``) is asked with an expired key and with a key scoped to
another policy.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.api import keys as api_keys
from labeling.models import ApiKey
from policies.models import Policy
from policies.roles import ADMIN, ensure_roles
from tests.labeling.api.conftest import FakeLiveWorker
from tests.labeling.conftest import make_version

# (method, path, body): one per endpoint family, all naming the policy "harassment-api".
ENDPOINTS = [
    ("get", "/api/v1/policies/harassment-api", None),
    ("get", "/api/v1/policies/harassment-api/versions", None),
    ("get", "/api/v1/policies/harassment-api/versions/1", None),
    ("post", "/api/v1/label", {"policy": "harassment-api", "content": "hello"}),
    ("post", "/v1/label", {"labeler_id": "harassment-api", "content_text": "hello"}),
]
AD_HOC = [
    ("post", "/api/v1/label", {"policy_text": "Label 1 for insults.", "content": "hello"}),
    ("post", "/v1/label", {"criteria_text": "Label 1 for insults.", "content_text": "hello"}),
]


KEYS = "labeling:apikey_list"


def _call(client: Client, method: str, path: str, body: Any, secret: str) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    if method == "get":
        return client.get(path, **headers)
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def policies(author: User) -> tuple[Policy, Policy]:
    """ "Harassment API" (v1 finalized) and "Spam API" (v1 finalized)."""
    made = []
    for name in ("Harassment API", "Spam API"):
        version = make_version(author, name=name, number=1)
        type(version).objects.filter(pk=version.pk).update(
            finalized_at=timezone.now(), finalized_by=author
        )
        made.append(version.policy)
    return made[0], made[1]


def _admin() -> User:
    ensure_roles()
    admin = User.objects.create_user(username="key_admin", is_staff=True)
    admin.groups.add(Group.objects.get(name=ADMIN))
    return admin


def _key(owner: User, **kwargs: Any) -> str:
    scopes = kwargs.pop("scopes", ["read", "label"])
    by = kwargs.pop("by", owner)
    return api_keys.create_key(owner=owner, name="svc", scopes=scopes, by=by, **kwargs).secret


def _expire(secret: str) -> ApiKey:
    key = ApiKey.objects.get(key_hash=api_keys.hash_key(secret))
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(days=1))
    key.refresh_from_db()
    return key


# Expiry --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_key_expires_after_the_default_lifetime(author: User, settings: Any) -> None:
    settings.COPE_API_KEY_DEFAULT_DAYS = 90
    before = timezone.now()
    key = api_keys.create_key(owner=author, name="svc", scopes=["read"], by=author).api_key
    assert key.expires_at is not None
    assert before + timedelta(days=90) <= key.expires_at <= timezone.now() + timedelta(days=90)


@pytest.mark.django_db
def test_never_expiring_keys_need_the_setting(author: User, settings: Any) -> None:
    settings.COPE_API_KEY_ALLOW_NEVER = False
    with pytest.raises(api_keys.ApiKeyError, match="must expire"):
        _key(author, never_expires=True)
    settings.COPE_API_KEY_ALLOW_NEVER = True
    secret = _key(author, never_expires=True)
    assert ApiKey.objects.get(key_hash=api_keys.hash_key(secret)).expires_at is None


@pytest.mark.django_db
def test_a_lifetime_past_the_maximum_is_refused(author: User, settings: Any) -> None:
    settings.COPE_API_KEY_MAX_DAYS = 30
    with pytest.raises(api_keys.ApiKeyError, match="1 to 30 days"):
        _key(author, days=31)


@pytest.mark.django_db
def test_every_endpoint_answers_401_key_expired_with_the_date(
    client: Client, author: User, policies: Any, fake_worker: FakeLiveWorker
) -> None:
    secret = _key(author)
    key = _expire(secret)
    date = key.expires_at.strftime("%Y-%m-%d")  # type: ignore[union-attr]
    for method, path, body in [("get", "/api/v1/policies", None), *ENDPOINTS, *AD_HOC]:
        response = _call(client, method, path, body, secret)
        assert response.status_code == 401, path
        data = response.json()
        assert data["code"] == "key_expired", path
        assert f"expired on {date}" in data["detail"]
        assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert fake_worker.requests == []


@pytest.mark.django_db
def test_an_unknown_or_revoked_key_says_so_not_expired(client: Client, author: User) -> None:
    secret = _key(author)
    key = _expire(secret)
    api_keys.revoke_key(api_key=key, by=author)
    for attempt in (secret, "cope_nope_nope"):
        data = _call(client, "get", "/api/v1/policies", None, attempt).json()
        assert data["code"] == "unauthorized" and "expired" not in data["detail"]


@pytest.mark.django_db
def test_an_expired_keys_use_is_not_recorded_nor_counted(
    client: Client, author: User, settings: Any
) -> None:
    settings.COPE_API_RATE_LIMIT = 1
    secret = _key(author)
    _expire(secret)
    for _ in range(3):
        assert _call(client, "get", "/api/v1/policies", None, secret).status_code == 401
    assert ApiKey.objects.get(key_hash=api_keys.hash_key(secret)).last_used_at is None


# Policy scope --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_scoped_key_gets_403_on_every_endpoint_for_another_policy(
    client: Client, author: User, policies: Any, fake_worker: FakeLiveWorker
) -> None:
    harassment, spam = policies
    secret = _key(author, policies=[spam])
    for method, path, body in ENDPOINTS:
        response = _call(client, method, path, body, secret)
        assert response.status_code == 403, path
        assert response.json()["code"] == "policy_out_of_scope"
        assert "'harassment-api' is not one of them" in response.json()["detail"]
    # Its own policy answers on every family.
    for method, path, body in ENDPOINTS:
        own_path = path.replace("harassment-api", "spam-api")
        own_body = json.loads(json.dumps(body).replace("harassment-api", "spam-api"))
        assert _call(client, method, own_path, own_body, secret).status_code == 200, own_path
    assert len(fake_worker.requests) == 2


@pytest.mark.django_db
def test_a_scoped_key_gets_403_for_a_policy_that_does_not_exist(
    client: Client, author: User, policies: Any
) -> None:
    secret = _key(author, policies=[policies[1]])
    response = _call(client, "get", "/api/v1/policies/nothing-here", None, secret)
    assert response.status_code == 403  # not 404: it learns nothing of other policies


@pytest.mark.django_db
def test_a_scoped_key_lists_only_its_policies(client: Client, author: User, policies: Any) -> None:
    secret = _key(author, policies=[policies[1]])
    data = _call(client, "get", "/api/v1/policies", None, secret).json()
    assert [row["slug"] for row in data["items"]] == ["spam-api"]
    unscoped = _key(author)
    data = _call(client, "get", "/api/v1/policies", None, unscoped).json()
    assert [row["slug"] for row in data["items"]] == ["harassment-api", "spam-api"]


@pytest.mark.django_db
def test_a_scoped_key_cannot_label_ad_hoc_text(
    client: Client, author: User, policies: Any, fake_worker: FakeLiveWorker
) -> None:
    secret = _key(author, scopes=["label_text"], by=_admin(), policies=[policies[1]])
    for method, path, body in AD_HOC:
        response = _call(client, method, path, body, secret)
        assert response.status_code == 403 and response.json()["code"] == "policy_out_of_scope"
    assert fake_worker.requests == []


@pytest.mark.django_db
def test_a_scoped_key_whose_policies_are_gone_reaches_none(client: Client, author: User) -> None:
    """Deleting its one (unfinalized) policy must not turn the key into an all-policies key."""
    gone = make_version(author, name="Scratch", number=1).policy
    other = make_version(author, name="Other", number=1).policy
    secret = _key(author, policies=[gone])
    type(gone.versions.get()).objects.filter(policy=gone).delete()
    gone.delete()
    assert _call(client, "get", "/api/v1/policies", None, secret).json()["items"] == []
    response = _call(client, "get", f"/api/v1/policies/{other.slug}", None, secret)
    assert response.status_code == 403


# The keys page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_keys_page_creates_a_scoped_expiring_key_and_shows_it(
    client: Client, author: User, policies: Any, settings: Any
) -> None:
    settings.COPE_API_KEY_ALLOW_NEVER = False
    client.force_login(author)
    page = client.get(reverse(KEYS)).content.decode()
    assert '<option value="90" selected>90 days</option>' in page
    assert "Never" not in page  # not offered while the setting is off
    response = client.post(
        reverse(KEYS),
        {"name": "moderation", "scopes": ["read"], "lifetime": "30", "policies": [policies[1].pk]},
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="moderation")
    assert key.policy_scoped and list(key.policies.all()) == [policies[1]]
    assert key.expires_at is not None
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    refused = client.post(
        reverse(KEYS), {"name": "forever", "scopes": ["read"], "lifetime": "never"}
    )
    assert refused.status_code == 422 and not ApiKey.objects.filter(name="forever").exists()


@pytest.mark.django_db
def test_the_keys_page_shows_expiry_expired_scope_and_last_use(
    client: Client, author: User, policies: Any
) -> None:
    scoped = _key(author, policies=[policies[1]])
    expired = _key(author)
    _expire(expired)
    _call(client, "get", "/api/v1/policies", None, scoped)
    client.force_login(author)
    page = client.get(reverse(KEYS)).content.decode()
    scoped_key = ApiKey.objects.get(key_hash=api_keys.hash_key(scoped))
    expired_key = ApiKey.objects.get(key_hash=api_keys.hash_key(expired))
    scoped_row = page.split(f'data-key="{scoped_key.prefix}"')[1].split("</tr>")[0]
    expired_row = page.split(f'data-key="{expired_key.prefix}"')[1].split("</tr>")[0]
    assert "Spam API" in scoped_row and "expired" not in scoped_row
    assert scoped_key.expires_at.strftime("%Y-%m-%d") in scoped_row  # type: ignore[union-attr]
    last_used = timezone.localtime(scoped_key.last_used_at).strftime("%Y-%m-%d %H:%M")
    assert last_used in scoped_row
    assert "expired" in expired_row and ">all<" in expired_row
    assert "never" in expired_row  # never used
