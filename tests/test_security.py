"""Hardening of the web side: login throttling per account and per client, the browser policies
every response carries, and the favicon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, RequestFactory

from cope_studio.lib.login import client_address
from tests.conftest import PASSWORD
from tests.django_process import run_django

LOCKED = "Too many failed sign-ins for this account or from this address"


def _sign_in(client: Client, username: str, password: str, address: str, path: str = "/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def _fail(client: Client, username: str, address: str, times: int) -> None:
    for _ in range(times):
        response = _sign_in(client, username, "wrong password", address)
        assert response.status_code in (200, 429)


def _signed_in_as(client: Client) -> Any:
    return client.get("/policies/").wsgi_request.user


# --- Login throttling ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_locked_account_refuses_the_right_password_and_says_why(
    author: User, reviewer: User
) -> None:
    limit = django_settings.AXES_FAILURE_LIMIT
    attacker = Client()
    _fail(attacker, author.username, "203.0.113.7", limit)
    response = _sign_in(attacker, author.username, PASSWORD, "203.0.113.7")
    assert response.status_code == 429
    page = response.content.decode()
    assert LOCKED in page
    assert f"try again in {django_settings.COPE_LOGIN_COOLOFF_MINUTES} minutes" in page.lower()
    assert "ask an admin to unlock it" in page
    assert not _signed_in_as(attacker).is_authenticated

    # The account stays locked from a fresh client too (the limit is per account)...
    owner = Client()
    assert _sign_in(owner, author.username, PASSWORD, "198.51.100.20").status_code == 429
    assert not _signed_in_as(owner).is_authenticated
    # ...and on a path without a request (a shell, the test client's login()).
    assert not Client().login(username=author.username, password=PASSWORD)

    # Another account from another client still signs in.
    other = Client()
    response = _sign_in(other, reviewer.username, PASSWORD, "198.51.100.30")
    assert response.status_code == 302
    assert _signed_in_as(other) == reviewer


@pytest.mark.django_db
def test_one_client_failing_on_many_accounts_is_locked_for_every_account(
    author: User, reviewer: User
) -> None:
    limit = django_settings.AXES_FAILURE_LIMIT
    sprayer = Client()
    for i in range(limit):
        _fail(sprayer, f"guessed-name-{i}", "203.0.113.9", 1)
    assert _sign_in(sprayer, reviewer.username, PASSWORD, "203.0.113.9").status_code == 429
    # The accounts themselves are not locked: their owners sign in from elsewhere.
    assert _sign_in(Client(), reviewer.username, PASSWORD, "198.51.100.40").status_code == 302


@pytest.mark.django_db
def test_the_admin_login_is_throttled_too(admin_user: User) -> None:
    limit = django_settings.AXES_FAILURE_LIMIT
    client = Client()
    for _ in range(limit):
        _sign_in(client, admin_user.username, "nope", "203.0.113.11", "/admin/login/")
    response = _sign_in(client, admin_user.username, PASSWORD, "203.0.113.11", "/admin/login/")
    assert response.status_code == 429 and LOCKED in response.content.decode()


@pytest.mark.django_db
def test_an_admin_unlocks_an_account_with_axes_reset(author: User) -> None:
    limit = django_settings.AXES_FAILURE_LIMIT
    _fail(Client(), author.username, "203.0.113.12", limit)
    assert _sign_in(Client(), author.username, PASSWORD, "198.51.100.50").status_code == 429
    call_command("axes_reset_username", author.username, verbosity=0)
    assert _sign_in(Client(), author.username, PASSWORD, "198.51.100.50").status_code == 302

    _fail(Client(), author.username, "203.0.113.12", limit)
    call_command("axes_reset", verbosity=0)
    assert _sign_in(Client(), author.username, PASSWORD, "203.0.113.12").status_code == 302


@pytest.mark.django_db
def test_failures_below_the_limit_lock_nothing_and_a_success_starts_the_count_again(
    author: User,
) -> None:
    limit = django_settings.AXES_FAILURE_LIMIT
    client = Client()
    _fail(client, author.username, "203.0.113.13", limit - 1)
    assert _sign_in(client, author.username, PASSWORD, "203.0.113.13").status_code == 302
    client.post("/logout/")
    _fail(client, author.username, "203.0.113.13", limit - 1)
    assert _sign_in(client, author.username, PASSWORD, "203.0.113.13").status_code == 302


def test_the_limit_and_cool_off_come_from_the_environment(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.COPE_PROXY_COUNT)"
    )
    env = {"COPE_LOGIN_FAILURE_LIMIT": "4", "COPE_LOGIN_COOLOFF_MINUTES": "2"}
    env |= {"COPE_PROXY_COUNT": "1"}
    assert run_django(code, env, tmp_path).stdout.split() == ["4", "120.0", "1"]
    bad = run_django(code, {"COPE_LOGIN_FAILURE_LIMIT": "0"}, tmp_path, check=False)
    assert bad.returncode != 0 and "COPE_LOGIN_FAILURE_LIMIT=0 is below the minimum 1" in bad.stderr


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "6.6.6.6", "10.0.0.1"),  # no proxy: a client's own header proves nothing
        (1, "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # the proxy appended the real address
        (2, "6.6.6.6, 203.0.113.5, 10.9.9.9", "203.0.113.5"),
        (1, "", "10.0.0.1"),  # the header missing: the connection's address
    ],
)
def test_the_client_address_trusts_only_what_the_proxies_wrote(
    settings: Any, proxies: int, forwarded: str, expected: str
) -> None:
    settings.COPE_PROXY_COUNT = proxies
    request = RequestFactory().post("/login/", REMOTE_ADDR="10.0.0.1")
    if forwarded:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_address(request) == expected


# --- Browser policies and the favicon -----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/policies/", "/admin/login/", "/api/v1/docs"])
def test_every_page_carries_a_strict_csp_and_a_permissions_policy(
    client: Client, author: User, path: str
) -> None:
    client.force_login(author)
    response = client.get(path, follow=True)
    assert response.status_code == 200
    policy = {
        part.split()[0]: part.split()[1:] for part in response["Content-Security-Policy"].split(";")
    }
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in value for values in policy.values() for value in values)
    permissions = response["Permissions-Policy"]
    assert "camera=()" in permissions and "microphone=()" in permissions


@pytest.mark.django_db
def test_the_favicon_is_served_and_linked(client: Client, author: User) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO file
    client.force_login(author)
    page = client.get("/policies/").content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in page
    assert client.get("/static/favicon.svg").status_code == 200
