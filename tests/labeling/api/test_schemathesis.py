"""schemathesis over /api/v1/openapi.json, with a label key and with a read key: whatever it
sends, the API answers no server error, no status its document does not declare, and no body
that does not match the declared shape.

Bounded: a fixed number of examples per operation and mode (positive: what the schema allows;
negative: what it forbids), derandomized, so a run is the same every time and takes seconds.
The model worker is ``FakeLiveWorker`` (this process, deterministic); the round trip itself is
tested on the real worker in test_api.py. Runs on PostgreSQL and on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from labeling.api import keys as api_keys
from tests.labeling.api.conftest import FakeLiveWorker
from tests.labeling.conftest import make_version

EXAMPLES = 25  # per operation and mode: 6 operations x 2 modes x 2 keys, about 600 requests
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Requests that reach real data, beside what is generated (random slugs find no policy).
KNOWN = {
    ("GET", "/api/v1/policies/{slug}"): [{"path_parameters": {"slug": "harassment-api"}}],
    ("GET", "/api/v1/policies/{slug}/versions"): [
        {"path_parameters": {"slug": "harassment-api"}, "query": {"limit": 1, "offset": 1}}
    ],
    ("GET", "/api/v1/policies/{slug}/versions/{number}"): [
        {"path_parameters": {"slug": "harassment-api", "number": 1}},
        {"path_parameters": {"slug": "harassment-api", "number": 2}},
    ],
    ("POST", "/api/v1/label"): [
        {"body": {"policy": "harassment-api", "contents": ["a", "b"]}},
        {"body": {"policy": "harassment-api", "version": 2, "content": "a"}},
        {"body": {"policy": "harassment-api", "version": 2, "allow_draft": True, "content": "a"}},
        {"body": {"policy_text": "# P\nAnything.", "content": "a"}},
        {"body": {"policy": "harassment-api", "policy_text": "# P", "content": "a"}},
    ],
    ("POST", "/v1/label"): [
        {"body": {"content_text": "a", "labeler_id": "harassment-api"}},
        {"body": {"content_text": "a", "labeler_id": "harassment-api", "labeler_version_id": "²"}},
        {"body": {"content_text": "a", "criteria_text": "# P\nAnything."}},
    ],
}


@pytest.fixture
def wsgi_app(settings: Any) -> Iterator[Any]:
    """The project's WSGI application, serving the test database. Like Django's test client,
    it keeps the test's connection open across requests (the handler would close it)."""
    settings.ALLOWED_HOSTS = ["*"]
    settings.COPE_API_RATE_LIMIT = 10**6
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def keys(author: Any, reviewer: Any, admin_user: Any) -> dict[str, str]:
    v1 = make_version(author, name="Harassment API", number=1)
    make_version(author, name="Harassment API", number=2)
    type(v1).objects.filter(pk=v1.pk).update(finalized_at=timezone.now(), finalized_by=author)
    label = api_keys.create_key(
        owner=author, name="svc", scopes=["read", "label", "label_text"], by=admin_user
    )
    read = api_keys.create_key(owner=reviewer, name="dash", scopes=["read"], by=reviewer)
    return {"label": label.secret, "read": read.secret}


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> str | None:
    """Run ``EXAMPLES`` generated cases; the first failure (shrunk), or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except (AssertionError, ExceptionGroup) as exc:
        return f"{mode.value} {operation.label}: {exc}"
    return None


def _coverage(schema: Any, operation: Any, headers: dict[str, str]) -> list[str]:
    """schemathesis's coverage cases: each bound, each type and each required field broken in
    turn, without randomness (what found the 2^63 offset)."""
    failures = []
    config = schema.config.generation_for(operation=operation, phase="coverage")
    cases = schema.iter_coverage_cases(
        operation, generation_modes=list(GenerationMode), generation_config=config
    )
    for case in cases:
        try:
            case.call_and_validate(headers=headers, checks=CHECKS)
        except (AssertionError, ExceptionGroup) as exc:
            failures.append(f"coverage {operation.label}: {exc}")
    return failures


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["label", "read"])
def test_schemathesis_finds_nothing(
    wsgi_app: Any, keys: dict[str, str], fake_worker: FakeLiveWorker, key: str
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", wsgi_app)
    headers = {"Authorization": f"Bearer {keys[key]}"}
    failures: list[str] = []
    statuses: set[int] = set()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6
    for operation in operations:
        for known in KNOWN.get((operation.method.upper(), operation.path), []):
            case = operation.Case(**known)
            try:
                response = case.call_and_validate(headers=headers, checks=CHECKS)
            except (AssertionError, ExceptionGroup) as exc:
                failures.append(f"known {operation.label} {known}: {exc}")
            else:
                statuses.add(response.status_code)
        failures += _coverage(schema, operation, headers)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _fuzz(operation, mode, headers)
            if failure:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)
    # The known requests reached what they were meant to: real rows, and each refusal.
    expected = {200, 409, 422} if key == "label" else {200, 403}
    assert expected <= statuses, statuses
