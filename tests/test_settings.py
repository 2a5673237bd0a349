"""The typed environment readers reject malformed values with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from cope_studio.lib.env import env_bool, env_choice, env_float, env_int, env_list, env_str


def test_env_bool_accepts_words_and_rejects_garbage() -> None:
    assert env_bool("X", False, {"X": "yes"}) is True
    assert env_bool("X", True, {"X": "off"}) is False
    assert env_bool("X", True, {}) is True
    with pytest.raises(ImproperlyConfigured, match="X='maybe'"):
        env_bool("X", False, {"X": "maybe"})


def test_env_int_rejects_non_numbers_and_values_below_minimum() -> None:
    assert env_int("N", 3, {"N": " 12 "}) == 12
    with pytest.raises(ImproperlyConfigured, match="N='twelve' is not a whole number"):
        env_int("N", 3, {"N": "twelve"})
    with pytest.raises(ImproperlyConfigured, match="below the minimum 1"):
        env_int("N", 3, {"N": "0"}, minimum=1)


def test_secret_read_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n", encoding="utf-8")
    assert env_str("KEY", "", {"KEY_FILE": str(secret)}) == "s3cret"
    with pytest.raises(ImproperlyConfigured, match="KEY_FILE"):
        env_str("KEY", "", {"KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_str("KEY", "", {"KEY_FILE": str(secret), "KEY": "also"})


def test_env_choice_names_the_valid_values() -> None:
    assert env_choice("B", "none", ("none", "openai"), {"B": " OpenAI "}) == "openai"
    assert env_choice("B", "none", ("none", "openai"), {}) == "none"
    with pytest.raises(ImproperlyConfigured, match="'opanai' is not valid; use one of"):
        env_choice("B", "none", ("none", "openai"), {"B": "opanai"})


def test_env_float_bounds() -> None:
    assert env_float("T", 0.95, {"T": "0.9"}, minimum=0.5, maximum=1.0) == 0.9
    with pytest.raises(ImproperlyConfigured, match="T=95.0 is outside"):
        env_float("T", 0.95, {"T": "95"}, minimum=0.5, maximum=1.0)


def test_env_list_splits_and_trims() -> None:
    assert env_list("H", ["a"], {"H": "x.org, y.org ,"}) == ["x.org", "y.org"]
    assert env_list("H", ["a"], {}) == ["a"]


def test_celery_sends_json_only_and_acks_late() -> None:
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1


@pytest.mark.django_db
def test_each_run_gets_its_own_postgres_test_database() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    import os

    assert connection.settings_dict["NAME"].endswith(f"_{os.getpid()}")
