"""Settings for production: `check --deploy` is clean at warning level with the documented
variables, weak secret keys are refused, connections are kept; and /healthz."""

from __future__ import annotations

import json
import os
import runpy
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]

# What docs/deploy.md tells a production install to set (behind an HTTPS proxy).
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "studio.example.org",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://studio.example.org",
    "DJANGO_SECURE_COOKIES": "true",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
    "DJANGO_BEHIND_HTTPS_PROXY": "true",
}


def _python(
    code: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_", "COPE_", "CELERY_"))
    }
    full = {**base, "PYTHONPATH": str(REPO), "COPE_DATA_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, *code], cwd=REPO, env=full, capture_output=True, text=True, timeout=120
    )


def _check_deploy(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return _python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)


def test_production_variables_are_documented() -> None:
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    for name in PRODUCTION:
        assert f"\n{name}=" in example, name


def test_check_deploy_is_clean_with_the_production_variables(tmp_path: Path) -> None:
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    result = _check_deploy(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_without_https_settings(tmp_path: Path) -> None:
    env = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "x.org"}
    result = _check_deploy(env, tmp_path)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


@pytest.mark.parametrize("key", ["change-me", "short-key-" + "x" * 20])
def test_a_weak_secret_key_is_refused(key: str, tmp_path: Path) -> None:
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": key}
    result = _check_deploy(env, tmp_path)
    assert result.returncode != 0 and "cope_studio.E001" in result.stderr
    served = _python(["-c", "import cope_studio.wsgi"], env, tmp_path)
    assert served.returncode != 0
    assert "Refusing to start with DJANGO_DEBUG off" in served.stderr
    # With DEBUG on (development) the same key is allowed.
    debug = _python(["-c", "import cope_studio.wsgi"], {**env, "DJANGO_DEBUG": "true"}, tmp_path)
    assert debug.returncode == 0, debug.stderr


def test_a_strong_key_serves(tmp_path: Path) -> None:
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    assert _python(["-c", "import cope_studio.wsgi"], env, tmp_path).returncode == 0


def test_connections_are_kept_with_health_checks_unless_debug(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s; import json; d = s.DATABASES['default']; "
        "print(json.dumps([d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS']]))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "cope_studio.settings", "DJANGO_SECRET_KEY": "k" * 60}
    prod = _python(["-c", code], env, tmp_path)
    assert json.loads(prod.stdout) == [60, True], prod.stderr
    debug = _python(["-c", code], {**env, "DJANGO_DEBUG": "true"}, tmp_path)
    assert json.loads(debug.stdout)[0] == 0
    chosen = _python(["-c", code], {**env, "DATABASE_CONN_MAX_AGE": "5"}, tmp_path)
    assert json.loads(chosen.stdout)[0] == 5


def test_sessions_are_read_through_the_shared_cache_when_there_is_one(tmp_path: Path) -> None:
    code = "from django.conf import settings as s; print(s.SESSION_ENGINE)"
    env = {"DJANGO_SETTINGS_MODULE": "cope_studio.settings", "DJANGO_SECRET_KEY": "k" * 60}
    assert _python(["-c", code], env, tmp_path).stdout.strip().endswith(".db")
    cached = _python(["-c", code], {**env, "COPE_CACHE_URL": "redis://127.0.0.1:6379/3"}, tmp_path)
    assert cached.stdout.strip().endswith(".cached_db"), cached.stderr


# /healthz --------------------------------------------------------------------------------------


@pytest.fixture
def broker_url(settings: Any) -> Any:
    """The Celery app's broker for the test, restored after."""
    from cope_studio.celery import app

    old = app.conf.broker_url, app.conf.broker_transport

    def point(url: str) -> None:
        app.conf.broker_url = url
        app.conf.broker_transport = None if not url.startswith("filesystem:") else old[1]

    yield point
    app.conf.broker_url, app.conf.broker_transport = old


@pytest.mark.django_db
def test_healthz_needs_no_login_and_ignores_the_host(client: Any, broker_url: Any) -> None:
    broker_url(os.environ.get("COPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5"))
    response = client.get("/healthz", HTTP_HOST="10.1.2.3")  # not in ALLOWED_HOSTS
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert client.head("/healthz").status_code == 200


@pytest.mark.django_db
def test_healthz_is_503_when_the_broker_is_down_and_says_no_more(
    client: Any, broker_url: Any
) -> None:
    broker_url("redis://127.0.0.1:1/0")  # nothing listens there
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unavailable"}
    assert b"127.0.0.1" not in response.content and b"refused" not in response.content.lower()


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_is_down(
    client: Any, broker_url: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from cope_studio.lib import health

    class DownDatabase:
        def cursor(self) -> Any:
            raise OperationalError("connection to server at db:5432 failed: password wrong")

    broker_url(os.environ.get("COPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5"))
    monkeypatch.setattr(health, "connection", DownDatabase())
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["database"] == "unavailable"
    assert b"password" not in response.content


@pytest.mark.django_db
def test_healthz_is_exempt_from_the_https_redirect(client: Any, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/policies/").status_code == 301


# gunicorn's control socket ------------------------------------------------------------------


def _gunicorn_config(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COPE_", "GUNICORN_"))}
    result = subprocess.run(
        [gunicorn, "--print-config", "cope_studio.wsgi"],
        cwd=REPO,  # gunicorn reads ./gunicorn.conf.py, as bin/run-studio and the image run it
        env={
            **base,
            "PYTHONPATH": str(REPO),
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def test_each_studio_gets_its_own_gunicorn_control_socket(tmp_path: Path) -> None:
    one = _gunicorn_config({"COPE_DATA_DIR": str(tmp_path / "one")}, tmp_path)
    two = _gunicorn_config({"COPE_DATA_DIR": str(tmp_path / "two")}, tmp_path)
    assert one["control_socket"] == str(tmp_path / "one" / "gunicorn.ctl")
    assert two["control_socket"] == str(tmp_path / "two" / "gunicorn.ctl")
    assert one["control_socket_disable"] == "False"
    off = _gunicorn_config({"GUNICORN_CONTROL_SOCKET": "off"}, tmp_path)
    assert off["control_socket_disable"] == "True"


def test_gunicorn_keeps_no_connection_alive_unless_told_to(tmp_path: Path) -> None:
    """Each request a connection of its own (so the workers share the load: see
    gunicorn.conf.py); an operator behind a balancing proxy can turn keep-alive back on."""
    assert _gunicorn_config({}, tmp_path)["keepalive"] == "0"
    assert _gunicorn_config({"GUNICORN_CMD_ARGS": "--keep-alive 2"}, tmp_path)["keepalive"] == "2"


def test_gunicorn_workers_hand_the_gil_over_sooner_than_pythons_default() -> None:
    """Each worker, once started, lowers the GIL's switch interval (see gunicorn.conf.py: a
    request's thread coming back from the database waited up to 5 ms per round trip)."""
    config = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with mock.patch("gc.freeze") as freeze:
            config["post_worker_init"](object())
        freeze.assert_called_once_with()
        assert sys.getswitchinterval() == pytest.approx(config["SWITCH_INTERVAL"])
        assert config["SWITCH_INTERVAL"] < 0.005
    finally:
        sys.setswitchinterval(before)
