"""Every answer of the API is JSON in a documented shape, whatever is sent: bounds on every
integer, ASCII digits, text that cannot be encoded, malformed JSON, unknown paths, wrong
methods, unexpected errors; and the label_text scope for ad-hoc text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from labeling.api import endpoints
from labeling.api import keys as api_keys
from tests.labeling.api.conftest import FakeLiveWorker
from tests.labeling.conftest import make_version
from tests.model_worker import fake_p1

LABEL = "/api/v1/label"
ABUSE = "You are a worthless idiot, Sam, and everyone hates you."
BIG = 2**63
UNPROCESSABLE_KEYS = {"detail", "code", "items", "errors"}


def _auth(secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def _post(client: Client, url: str, body: Any, secret: str, raw: bool = False) -> Any:
    data = body if raw else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **_auth(secret))


@pytest.fixture
def finalized(author: Any) -> Any:
    version = make_version(author, name="Harassment API", number=1)
    type(version).objects.filter(pk=version.pk).update(finalized_at=timezone.now())
    version.refresh_from_db()
    return version


@pytest.fixture
def label_key(author: Any) -> str:
    return api_keys.create_key(owner=author, name="svc", scopes=["read", "label"], by=author).secret


@pytest.fixture
def text_key(author: Any, admin_user: Any) -> str:
    return api_keys.create_key(
        owner=author, name="adhoc", scopes=["label", "label_text"], by=admin_user
    ).secret


# label_text ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_policy_text_needs_the_label_text_scope(
    client: Client, label_key: str, text_key: str, fake_worker: FakeLiveWorker
) -> None:
    text = "# Policy\nInsults aimed at a person."
    for url, body in (
        (LABEL, {"policy_text": text, "content": ABUSE}),
        ("/v1/label", {"content_text": ABUSE, "criteria_text": text}),
    ):
        sent = len(fake_worker.requests)
        response = _post(client, url, body, label_key)
        assert response.status_code == 403, response.content
        data = response.json()
        assert data["code"] == "forbidden" and "label_text" in data["detail"]
        assert len(fake_worker.requests) == sent  # refused before anything was sent
        response = _post(client, url, body, text_key)
        assert response.status_code == 200, response.content
        data = response.json()
        assert data["unreviewed"] is True and "not been reviewed" in data["warning"]
    assert _post(client, LABEL, {"policy_text": text, "content": ABUSE}, text_key).json()[
        "results"
    ][0]["p1"] == pytest.approx(fake_p1(text, ABUSE))


@pytest.mark.django_db
def test_a_finalized_version_is_reviewed_and_a_draft_is_not(
    client: Client, author: Any, label_key: str, finalized: Any, fake_worker: FakeLiveWorker
) -> None:
    data = _post(client, LABEL, {"policy": "harassment-api", "content": ABUSE}, label_key).json()
    assert data["unreviewed"] is False and data["warning"] is None
    make_version(author, name="Harassment API", number=2)
    body = {"policy": "harassment-api", "version": 2, "allow_draft": True, "content": ABUSE}
    data = _post(client, LABEL, body, label_key).json()
    assert data["unreviewed"] is True and "a draft" in data["warning"]


# Bounds and digits --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        f"/api/v1/policies?offset={BIG}",
        f"/api/v1/policies?limit={BIG}",
        f"/api/v1/policies?offset={BIG * 4}&limit=5",
        f"/api/v1/policies/harassment-api/versions?offset={BIG}",
        f"/api/v1/policies/harassment-api/versions/{BIG}",
        "/api/v1/policies/harassment-api/versions/0",
        "/api/v1/policies/%00",
    ],
)
def test_integers_past_their_bounds_are_422_json(
    client: Client, label_key: str, finalized: Any, url: str
) -> None:
    response = client.get(url, **_auth(label_key))
    assert response.status_code == 422, response.content
    data = response.json()
    assert set(data) == UNPROCESSABLE_KEYS and data["code"] == "invalid" and data["errors"]


@pytest.mark.django_db
def test_a_version_number_past_its_bound_in_a_body_is_422(
    client: Client, label_key: str, finalized: Any, fake_worker: FakeLiveWorker
) -> None:
    body = {"policy": "harassment-api", "version": BIG, "content": ABUSE}
    response = _post(client, LABEL, body, label_key)
    assert response.status_code == 422 and response.json()["errors"][0]["loc"][-1] == "version"
    body = {"policy": "harassment\x00api", "content": ABUSE}
    assert _post(client, LABEL, body, label_key).status_code == 422


@pytest.mark.django_db
@pytest.mark.parametrize("wanted", ["²", "１", "v٣", str(BIG), "0", "-1", "1.0"])
def test_labeler_version_id_takes_ascii_digits_only(
    client: Client, label_key: str, finalized: Any, wanted: str
) -> None:
    body = {"content_text": ABUSE, "labeler_id": "harassment-api", "labeler_version_id": wanted}
    response = _post(client, "/v1/label", body, label_key)
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "invalid" and "ASCII digits" in response.json()["detail"]


@pytest.mark.django_db
def test_labeler_version_id_still_takes_latest_and_numbers(
    client: Client, label_key: str, finalized: Any, fake_worker: FakeLiveWorker
) -> None:
    for wanted in ("latest", "1", "v1", " V1 ", ""):
        body = {"content_text": ABUSE, "labeler_id": "harassment-api", "labeler_version_id": wanted}
        assert _post(client, "/v1/label", body, label_key).status_code == 200, wanted


# Text that cannot be encoded ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_content_with_a_lone_surrogate_is_422_naming_the_item(
    client: Client, label_key: str, text_key: str, finalized: Any, fake_worker: FakeLiveWorker
) -> None:
    # JSON can carry a lone surrogate as an escape; Python decodes it as such.
    raw = '{"policy": "harassment-api", "contents": ["fine", "bad \\ud800 here", "fine too"]}'
    response = _post(client, LABEL, raw, label_key, raw=True)
    assert response.status_code == 422, response.content
    data = response.json()
    assert data["code"] == "unencodable" and [i["index"] for i in data["items"]] == [1]
    assert "U+D800" in data["items"][0]["message"] and fake_worker.requests == []
    raw = '{"content_text": "\\udfff", "labeler_id": "harassment-api"}'
    response = _post(client, "/v1/label", raw, label_key, raw=True)
    assert response.status_code == 422 and response.json()["items"][0]["index"] == 0
    raw = '{"policy_text": "# P\\ud800", "content": "x"}'
    response = _post(client, LABEL, raw, text_key, raw=True)
    assert response.status_code == 422 and response.json()["errors"][0]["loc"][-1] == "policy_text"


# Every error is JSON with detail and code ---------------------------------------------------


@pytest.mark.django_db
def test_malformed_json_is_400_with_a_code(client: Client, label_key: str) -> None:
    response = _post(client, LABEL, "{not json", label_key, raw=True)
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "malformed_request" and "JSON" in data["detail"]


@pytest.mark.django_db
def test_a_method_the_path_does_not_take_is_405_json_with_allow(
    client: Client, label_key: str
) -> None:
    response = client.get(LABEL, **_auth(label_key))
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response.json()["code"] == "method_not_allowed"
    response = client.delete("/api/v1/policies", **_auth(label_key))
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


@pytest.mark.django_db
def test_an_unknown_api_path_is_404_json(client: Client, label_key: str) -> None:
    for url in ("/api/v1/nope", "/api/v2/policies", "/v1/nope", "/api/v1/policies/"):
        response = client.get(url, **_auth(label_key))
        assert response.status_code == 404, url
        assert (
            response.json()["code"] == "not_found" and "/api/v1/docs" in response.json()["detail"]
        )


@pytest.mark.django_db
def test_an_unexpected_error_is_500_json_and_logged(
    client: Client, label_key: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def boom() -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(endpoints, "_policies", boom)
    response = client.get("/api/v1/policies", **_auth(label_key))
    assert response.status_code == 500
    data = response.json()
    assert data["code"] == "server_error" and "went away" not in data["detail"]
    assert "the database went away" in caplog.text


@pytest.mark.django_db
def test_schema_errors_have_the_documented_422_shape(client: Client, label_key: str) -> None:
    response = _post(client, LABEL, {"contents": ["a", 5, None]}, label_key)
    assert response.status_code == 422
    data = response.json()
    assert set(data) == UNPROCESSABLE_KEYS and data["code"] == "invalid"
    assert {i["index"] for i in data["items"]} == {1, 2}
    assert all(set(e) == {"loc", "msg", "type"} for e in data["errors"])
    schema = client.get("/api/v1/openapi.json").json()
    declared = schema["components"]["schemas"]["UnprocessableOut"]
    assert set(declared["required"]) == UNPROCESSABLE_KEYS


# The OpenAPI document -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_openapi_document_declares_every_status_and_one_of_policy(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/v1/policies", "/api/v1/policies/{slug}/versions/{number}"):
        responses = paths[path]["get"]["responses"]
        assert {"200", "401", "403", "422", "429", "500"} <= set(responses), path
    for path in ("/api/v1/label", "/v1/label"):
        responses = paths[path]["post"]["responses"]
        assert {"400", "401", "403", "404", "409", "422", "429", "500", "502", "503"} <= set(
            responses
        )
        ref = responses["422"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/UnprocessableOut")
    label_in = schema["components"]["schemas"]["LabelIn"]
    assert [alt["required"] for alt in label_in["oneOf"]] == [["policy"], ["policy_text"]]
    params = {p["name"]: p["schema"] for p in paths["/api/v1/policies"]["get"]["parameters"]}
    assert params["offset"]["maximum"] < 2**63 and params["limit"]["maximum"] < 2**63
    label_out = schema["components"]["schemas"]["LabelOut"]["properties"]
    assert "unreviewed" in label_out and "warning" in label_out
