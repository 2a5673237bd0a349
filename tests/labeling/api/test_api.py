"""The labeling API over HTTP: every status code, keys, rate limit, schema and docs page.

The label path runs on the real model worker (``celery_workers``, embedding backend).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from labeling.api import keys as api_keys
from labeling.api import live
from labeling.models import ApiKey
from tests.labeling.conftest import make_version

LABEL = "/api/v1/label"
ABUSE = "You are a worthless idiot, Sam, and everyone hates you."


@pytest.fixture(autouse=True)
def _patient(settings: Any) -> None:
    settings.COPE_LIVE_TIMEOUT = 120.0  # a loaded test machine; the 503 test sets its own


CALM = "Lovely weather in Lisbon today."


def _auth(secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def _post(client: Client, url: str, body: dict[str, Any], secret: str | None) -> Any:
    headers = _auth(secret) if secret else {}
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def policy_versions(author: Any) -> tuple[Any, Any]:
    """v1 finalized, v2 a draft, of one policy."""
    v1 = make_version(author, name="Harassment API", number=1)
    v2 = make_version(author, name="Harassment API", number=2)
    type(v1).objects.filter(pk=v1.pk).update(finalized_at=timezone.now(), finalized_by=author)
    v1.refresh_from_db()
    return v1, v2


@pytest.fixture
def label_key(author: Any) -> str:
    return api_keys.create_key(owner=author, name="svc", scopes=["read", "label"], by=author).secret


def _text_key(owner: Any) -> str:
    """A key with the label_text scope, which only an admin grants."""
    from django.contrib.auth.models import User

    from policies.roles import ADMIN, ensure_roles

    ensure_roles()
    admin = User.objects.filter(groups__name=ADMIN).first()
    if admin is None:
        admin = User.objects.create_user(username="text_key_admin", is_staff=True)
        admin.groups.add(Group.objects.get(name=ADMIN))
    return api_keys.create_key(owner=owner, name="text", scopes=["label_text"], by=admin).secret


@pytest.fixture
def read_key(reviewer: Any) -> str:
    return api_keys.create_key(owner=reviewer, name="dash", scopes=["read"], by=reviewer).secret


# 401 ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_key_bad_key_and_revoked_key_get_401_with_json(
    client: Client, author: Any, label_key: str
) -> None:
    for headers in ({}, _auth("cope_nope_nope"), {"HTTP_AUTHORIZATION": label_key}):
        response = client.get("/api/v1/policies", **headers)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
        assert response["WWW-Authenticate"] == "Bearer"
    assert client.get("/api/v1/policies", **_auth(label_key)).status_code == 200
    key = ApiKey.objects.get(key_hash=api_keys.hash_key(label_key))
    assert api_keys.revoke_key(api_key=key, by=author)
    response = client.get("/api/v1/policies", **_auth(label_key))
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


@pytest.mark.django_db
def test_inactive_owner_key_is_401(client: Client, author: Any, label_key: str) -> None:
    author.is_active = False
    author.save()
    assert client.get("/api/v1/policies", **_auth(label_key)).status_code == 401


# 403 ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_read_only_key_cannot_label(client: Client, read_key: str, policy_versions: Any) -> None:
    response = _post(client, LABEL, {"policy": "harassment-api", "content": ABUSE}, read_key)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden" and "label" in response.json()["detail"]
    response = _post(client, "/v1/label", {"content_text": ABUSE, "criteria_text": "x"}, read_key)
    assert response.status_code == 403


@pytest.mark.django_db
def test_label_scope_follows_the_owners_role(
    client: Client, author: Any, label_key: str, policy_versions: Any
) -> None:
    from django.contrib.auth.models import Group

    author.groups.set([Group.objects.get(name="reviewer")])  # demoted after the key was made
    response = _post(client, LABEL, {"policy": "harassment-api", "content": ABUSE}, label_key)
    assert response.status_code == 403


@pytest.mark.django_db
def test_a_reviewer_cannot_create_a_label_key(reviewer: Any) -> None:
    with pytest.raises(api_keys.ApiKeyError, match="label"):
        api_keys.create_key(owner=reviewer, name="x", scopes=["label"], by=reviewer)


# 404 / 409 ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_unknown_policy_and_version_are_404(
    client: Client, label_key: str, policy_versions: Any
) -> None:
    for url in ("/api/v1/policies/nope", "/api/v1/policies/harassment-api/versions/9"):
        response = client.get(url, **_auth(label_key))
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    response = _post(client, LABEL, {"policy": "nope", "content": ABUSE}, label_key)
    assert response.status_code == 404
    body = {"policy": "harassment-api", "version": 9, "allow_draft": True, "content": ABUSE}
    assert _post(client, LABEL, body, label_key).status_code == 404
    body = {"content_text": ABUSE, "labeler_id": "nope"}
    assert _post(client, "/v1/label", body, label_key).status_code == 404


@pytest.mark.django_db
def test_draft_version_is_409_unless_allowed(
    client: Client, author: Any, label_key: str, policy_versions: Any
) -> None:
    body = {"policy": "harassment-api", "version": 2, "content": ABUSE}
    response = _post(client, LABEL, body, label_key)
    assert response.status_code == 409 and response.json()["code"] == "not_finalized"
    assert "allow_draft" in response.json()["detail"]
    response = _post(
        client,
        "/v1/label",
        {"content_text": ABUSE, "labeler_id": "harassment-api", "labeler_version_id": "2"},
        label_key,
    )
    assert response.status_code == 409
    make_version(author, name="Unfinished")
    response = _post(client, LABEL, {"policy": "unfinished", "content": ABUSE}, label_key)
    assert response.status_code == 409 and "no finalized version" in response.json()["detail"]


# 422 ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_batch_over_the_limit_is_422(
    client: Client, settings: Any, label_key: str, policy_versions: Any
) -> None:
    settings.COPE_API_MAX_BATCH = 3
    body = {"policy": "harassment-api", "contents": ["a", "b", "c", "d"]}
    response = _post(client, LABEL, body, label_key)
    assert response.status_code == 422 and response.json()["code"] == "batch_too_large"
    assert "limit is 3" in response.json()["detail"]


@pytest.mark.django_db
def test_content_over_the_token_budget_is_422_per_item(
    client: Client, settings: Any, label_key: str, policy_versions: Any
) -> None:
    settings.COPE_CONTEXT_LIMIT = 1000  # the policy needs ~300 tokens, estimated
    long = "insult " * 800
    body = {"policy": "harassment-api", "contents": [ABUSE, long, CALM]}
    response = _post(client, LABEL, body, label_key)
    assert response.status_code == 422
    data = response.json()
    assert data["code"] == "too_long" and [i["index"] for i in data["items"]] == [1]
    assert "not truncated" in data["items"][0]["message"]


@pytest.mark.django_db
def test_malformed_body_is_422_json(client: Client, label_key: str) -> None:
    response = _post(client, LABEL, {"contents": "not a list"}, label_key)
    assert response.status_code == 422 and response.json()["code"] == "invalid"
    response = _post(client, LABEL, {"content": ABUSE}, label_key)  # neither policy nor text
    assert response.status_code == 422 and response.json()["code"] == "invalid"
    response = _post(client, "/v1/label", {"content_text": ABUSE}, label_key)
    assert response.status_code == 422


# 429 ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rate_limit_is_429_with_retry_after(client: Client, settings: Any, label_key: str) -> None:
    from django.core.cache import cache

    cache.clear()
    settings.COPE_API_RATE_LIMIT = 2
    settings.COPE_API_RATE_WINDOW = 60
    assert client.get("/api/v1/policies", **_auth(label_key)).status_code == 200
    assert client.get("/api/v1/policies", **_auth(label_key)).status_code == 200
    response = client.get("/api/v1/policies", **_auth(label_key))
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60


# Reading -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_policies_and_versions_and_fetch_a_version(
    client: Client, read_key: str, policy_versions: Any
) -> None:
    data = client.get("/api/v1/policies", **_auth(read_key)).json()
    assert data["count"] == 1
    row = data["items"][0]
    assert row["slug"] == "harassment-api"
    assert (row["latest_version"], row["finalized_version"]) == (2, 1)
    data = client.get("/api/v1/policies/harassment-api/versions", **_auth(read_key)).json()
    assert [(v["number"], v["finalized"]) for v in data["items"]] == [(2, False), (1, True)]
    data = client.get("/api/v1/policies/harassment-api/versions/1", **_auth(read_key)).json()
    assert data["text"] == policy_versions[0].text and data["figures"] is None


@pytest.mark.django_db
def test_last_used_is_written_at_most_once_a_minute(
    client: Client, label_key: str, django_assert_max_num_queries: Any
) -> None:
    key = ApiKey.objects.get(key_hash=api_keys.hash_key(label_key))
    assert key.last_used_at is None
    client.get("/api/v1/policies", **_auth(label_key))
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    client.get("/api/v1/policies", **_auth(label_key))
    key.refresh_from_db()
    assert key.last_used_at == first


@pytest.mark.django_db
def test_openapi_schema_validates(client: Client) -> None:
    from openapi_spec_validator import validate

    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    validate(schema)
    assert {"/api/v1/policies", "/api/v1/label", "/v1/label"} <= set(schema["paths"])


@pytest.mark.django_db
def test_docs_page_loads_its_assets_from_our_static_files(client: Client) -> None:
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html and "/static/ninja/swagger-ui.css" in html
    assert "cdn" not in html.lower()
    assert client.get("/static/ninja/swagger-ui-bundle.js").status_code == 200


# Labeling on the real worker ---------------------------------------------------------------


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_label_one_and_a_batch_on_the_real_worker(
    celery_workers: Any, client: Client, author: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = api_keys.create_key(owner=author, name="svc", scopes=["label"], by=author).secret
    v1 = make_version(author, name="Harassment API", number=1)
    type(v1).objects.filter(pk=v1.pk).update(finalized_at=timezone.now())
    response = _post(client, LABEL, {"policy": "harassment-api", "content": ABUSE}, secret)
    assert response.status_code == 200, response.content
    data = response.json()
    (result,) = data["results"]
    assert result["label"] == 1 and result["p1"] > 0.5
    assert (result["policy"], result["version"]) == ("harassment-api", 1)
    assert result["model_id"] and data["backend"] == "embedding" and data["weak_backend"]
    assert data["timing"]["model_ms"] > 0
    assert (
        data["timing"]["total_ms"] >= data["timing"]["round_trip_ms"] >= data["timing"]["model_ms"]
    )

    batch = [ABUSE, CALM] * 32
    response = _post(client, LABEL, {"policy": "harassment-api", "contents": batch}, secret)
    assert response.status_code == 200
    labels = [r["label"] for r in response.json()["results"]]
    assert labels == [1, 0] * 32

    assert data["unreviewed"] is False and data["warning"] is None

    body = {"policy_text": v1.text, "contents": [CALM]}
    assert _post(client, LABEL, body, secret).status_code == 403  # no label_text scope
    text_key = _text_key(author)
    data = _post(client, LABEL, body, text_key).json()
    assert data["results"][0]["label"] == 0 and data["policy"] is None
    assert data["unreviewed"] is True and "not been reviewed" in data["warning"]
    assert secret not in caplog.text and text_key not in caplog.text


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_zentropi_shape_on_the_real_worker(
    celery_workers: Any, client: Client, author: Any
) -> None:
    secret = api_keys.create_key(owner=author, name="z", scopes=["label"], by=author).secret
    v1 = make_version(author, name="Harassment API", number=1)
    type(v1).objects.filter(pk=v1.pk).update(finalized_at=timezone.now())
    body = {"content_text": ABUSE, "criteria_text": v1.text}
    response = _post(client, "/v1/label", body, _text_key(author))
    assert response.status_code == 200, response.content
    data = response.json()
    assert set(data) == {"label", "confidence", "compute_time", "unreviewed", "warning"}
    assert data["label"] == "1" and 0.5 <= data["confidence"] <= 1.0 and data["compute_time"] > 0
    assert data["unreviewed"] is True and data["warning"]
    body = {"content_text": CALM, "labeler_id": "harassment-api", "labeler_version_id": "latest"}
    data = _post(client, "/v1/label", body, secret).json()
    assert data["label"] == "0" and 0.5 <= data["confidence"] <= 1.0
    assert data["unreviewed"] is False and data["warning"] is None
    body["labeler_version_id"] = "1"
    assert _post(client, "/v1/label", body, secret).json()["label"] == "0"


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_no_worker_answering_is_503(
    celery_workers: Any, client: Client, author: Any, settings: Any, monkeypatch: Any
) -> None:
    secret = _text_key(author)
    settings.COPE_LIVE_TIMEOUT = 1.0
    monkeypatch.setattr(live, "LIVE_QUEUE", "nobody-consumes-this")
    body = {"policy_text": "# Policy\nAnything.", "content": ABUSE}
    response = _post(client, LABEL, body, secret)
    if celery_workers.redis_url:  # the request nobody took must not keep the workers "busy"
        import redis

        redis.Redis.from_url(celery_workers.redis_url).delete("nobody-consumes-this")
    assert response.status_code == 503
    assert (
        response.json()["code"] == "no_worker"
        and "No model worker answered" in response.json()["detail"]
    )
