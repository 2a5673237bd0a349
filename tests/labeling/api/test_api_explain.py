"""``explain: true`` on ``POST /api/v1/label``: the clauses whose removal changes each label,
computed on the model worker (here ``FakeLiveWorker``, whose p(1) the test computes itself),
bounded and documented with its cost."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from labeling.api import keys as api_keys
from labeling.api.schemas import MAX_EXPLAIN_SCORES
from tests.labeling.api.conftest import FakeLiveWorker
from tests.labeling.conftest import make_version
from tests.model_worker import fake_p1
from worker.clauses import parse_clauses, remove_clause

pytestmark = pytest.mark.django_db
URL = "/api/v1/label"
CONTENTS = [f"content number {n}" for n in range(12)]


@pytest.fixture
def version(author: Any) -> Any:
    v = make_version(author, name="Harassment API")
    type(v).objects.filter(pk=v.pk).update(finalized_at=timezone.now(), finalized_by=author)
    v.refresh_from_db()
    return v


@pytest.fixture
def key(author: Any) -> str:
    return api_keys.create_key(owner=author, name="svc", scopes=["read", "label"], by=author).secret


def _post(client: Client, body: dict[str, Any], key: str) -> Any:
    return client.post(
        URL,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_explain_names_the_clauses_whose_removal_flips_each_label(
    client: Client, version: Any, key: str, fake_worker: FakeLiveWorker
) -> None:
    response = _post(
        client, {"policy": version.policy.slug, "contents": CONTENTS, "explain": True}, key
    )
    assert response.status_code == 200, response.content
    clauses = parse_clauses(version.text)
    # One request for the policy, one per clause removed: the documented cost.
    assert len(fake_worker.requests) == 1 + len(clauses)
    flips = 0
    for content, result in zip(CONTENTS, response.json()["results"], strict=True):
        p1 = fake_p1(version.text, content)
        expected = []
        for clause in clauses:
            without = fake_p1(remove_clause(version.text, clause), content)
            if (without >= 0.5) != (p1 >= 0.5):
                expected.append((clause.key, _logit(without) - _logit(p1), without))
        expected.sort(key=lambda e: -abs(e[1]))
        got = result["explain"]
        assert [e["clause"] for e in got] == [k for k, _, _ in expected]
        for effect, (_, delta, without) in zip(got, expected, strict=True):
            assert effect["delta_logit"] == pytest.approx(delta, abs=1e-5)
            assert effect["p1_with"] == pytest.approx(p1) and effect["p1_without"] == pytest.approx(
                without
            )
            assert effect["label_without"] == int(without >= 0.5)
        flips += len(got)
    assert flips, "the fixed contents flip some label, or this test proves nothing"


def test_without_explain_nothing_more_is_scored(
    client: Client, version: Any, key: str, fake_worker: FakeLiveWorker
) -> None:
    response = _post(client, {"policy": version.policy.slug, "content": "x"}, key)
    assert response.status_code == 200
    assert response.json()["results"][0]["explain"] is None
    assert len(fake_worker.requests) == 1


def test_explain_over_the_limit_is_422_and_scores_nothing(
    client: Client, version: Any, key: str, fake_worker: FakeLiveWorker
) -> None:
    n = MAX_EXPLAIN_SCORES // len(parse_clauses(version.text)) + 1
    body = {"policy": version.policy.slug, "contents": ["x"] * n, "explain": True}
    response = _post(client, body, key)
    assert response.status_code == 422
    assert response.json()["code"] == "explain_too_large"
    assert fake_worker.requests == []


def test_explain_is_documented_with_its_cost(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    field = schema["components"]["schemas"]["LabelIn"]["properties"]["explain"]
    assert "one score per clause per content" in field["description"]
    assert str(MAX_EXPLAIN_SCORES) in field["description"]
    assert "ClauseEffect" in schema["components"]["schemas"]
