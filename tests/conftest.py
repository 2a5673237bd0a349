"""Shared fixtures: fixed personas and small factories (no JSON fixtures)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from policies.roles import ADMIN, AUTHOR, REVIEWER, ensure_roles

# Real Celery workers (``celery_workers``), shared by tests/labeling and tests/browser. pytest
# takes ``pytest_plugins`` only from the rootmost conftest, which this is.
pytest_plugins = ["tests.celery_workers"]

PASSWORD = "correct horse battery staple"

POLICY_TEXT = """# Harassment — test policy

## Overview
This policy finds content that targets a specific person with abuse.

## Definition of Terms
- **Target**: a specific, identifiable person.

## Interpretation of Language
- Read insults literally; quoted abuse counts only when endorsed.

## Definition of Labels

### (HA1) Targeted abuse
#### Includes
- Insults aimed at a **Target**.
- Threats of harm against a **Target**.
#### Excludes
- Criticism of ideas or public work.
"""

TWIN_TEXT = """# Harassment — test policy

## Overview
The policy identifies material that attacks a particular individual abusively.

## Definition of Terms
- **Target**: an individual who can be identified.

## Interpretation of Language
- Take insults at face value; repeated abuse only counts when the speaker endorses it.

## Definition of Labels

### (HA1) Targeted abuse
#### Includes
- Name-calling directed at a **Target**.
- Statements threatening to hurt a **Target**.
#### Excludes
- Critique of someone's ideas or published work.
"""


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    """Give each test run its own PostgreSQL test database, so that two runs on one machine
    (a developer's and CI's, or parallel sessions) never drop each other's database."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.postgresql":
        base = db.get("TEST", {}).get("NAME") or f"test_{db['NAME']}"
        db.setdefault("TEST", {})["NAME"] = f"{base}_{os.getpid()}"


@pytest.fixture(autouse=True)
def _fresh_cache(request: pytest.FixtureRequest) -> None:
    from django.core.cache import caches

    caches["local"].clear()  # a process's own memos: ids are reused between tests on SQLite
    # The default cache (a database table, or Redis) outlives a test that commits (rate-limit
    # windows, queue counts over the cap; a transactional test's flush leaves the table alone)
    # and ids are reused between tests on SQLite, so each test that can reach the database
    # starts with an empty one. A test without the database cannot reach the cache either.
    names = set(request.fixturenames)
    if request.node.get_closest_marker("django_db") is None and not names & {
        "db",
        "transactional_db",
        "live_server",
    }:
        return
    request.getfixturevalue("db")  # the test database, transactional or not, as the test asked
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness costs ~2 s per persona; tests do not need it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _persona(username: str, role: str | None, **extra: Any) -> User:
    ensure_roles()
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def author(db: Any) -> User:
    return _persona("ada_author", AUTHOR)


@pytest.fixture
def reviewer(db: Any) -> User:
    return _persona("rui_reviewer", REVIEWER)


@pytest.fixture
def second_reviewer(db: Any) -> User:
    return _persona("rhea_reviewer", REVIEWER)


@pytest.fixture
def admin_user(db: Any) -> User:
    return _persona("ana_admin", ADMIN, is_staff=True)


@pytest.fixture
def outsider(db: Any) -> User:
    return _persona("olly_outsider", None)


@pytest.fixture
def policy_text() -> str:
    return POLICY_TEXT


@pytest.fixture
def twin_text() -> str:
    return TWIN_TEXT
