"""A real OpenID provider (tests/oidc_provider) for the single sign-on tests, and the steps a
browser would take through it, done with an HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.test import Client

from accounts import oidc
from policies.roles import ensure_roles
from tests.oidc_provider.fixture import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    ROLE_GROUPS,
    RunningProvider,
    running_provider,
)

STUDIO = "http://testserver"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    with running_provider(tmp_path_factory.mktemp("provider"), studio_urls=[STUDIO]) as running:
        yield running


def configure(settings: Any, provider: RunningProvider) -> None:
    """The studio set up for ``provider`` as an operator would through COPE_OIDC_* variables."""
    settings.COPE_OIDC_ISSUER = provider.issuer
    settings.COPE_OIDC_PROVIDER_NAME = "Test IdP"
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    for name, group in ROLE_GROUPS.items():
        setattr(settings, name, group)
    oidc._discovered.clear()


@pytest.fixture
def sso(settings: Any, provider: RunningProvider, db: None) -> Iterator[RunningProvider]:
    configure(settings, provider)
    ensure_roles()
    yield provider
    oidc._discovered.clear()


@dataclass
class Flow:
    """One person's round trip: the studio's test client and their browser at the provider."""

    client: Client
    browser: requests.Session
    provider: RunningProvider

    def start(self, query: str = "") -> str:
        """The studio's redirect to the provider's authorization endpoint."""
        response = self.client.get(f"/oidc/authenticate/{query}")
        assert response.status_code == 302, response
        return str(response["Location"])

    def provider_sign_in(self, username: str, authorize_url: str) -> requests.Response:
        """Signs in at the provider's login page and returns its answer to the authorization
        request (a redirect back to the studio)."""
        response = self.browser.get(authorize_url, allow_redirects=False)
        if response.status_code == 302 and "/login/" in response.headers["Location"]:
            login_url = urljoin(self.provider.url, response.headers["Location"])
            self.browser.get(login_url)
            form = {
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.browser.cookies["providercsrf"],
            }
            response = self.browser.post(login_url, data=form, allow_redirects=False)
            assert response.status_code == 302, response.text
            response = self.browser.get(
                urljoin(self.provider.url, response.headers["Location"]), allow_redirects=False
            )
        return response

    def callback_url(self, username: str, query: str = "") -> str:
        answer = self.provider_sign_in(username, self.start(query))
        assert answer.status_code == 302, answer.text
        location = answer.headers["Location"]
        assert location.startswith(f"{STUDIO}/oidc/callback/"), location
        return location

    def finish(self, callback_url: str) -> Any:
        parts = urlsplit(callback_url)
        return self.client.get(f"{parts.path}?{parts.query}")

    def sign_in(self, username: str) -> Any:
        return self.finish(self.callback_url(username))


@pytest.fixture
def flow(sso: RunningProvider) -> Flow:
    return Flow(client=Client(), browser=requests.Session(), provider=sso)


def set_provider_groups(provider: RunningProvider, username: str, groups: list[str]) -> None:
    response = requests.post(f"{provider.url}/test/groups/{username}/", json=groups, timeout=10)
    assert response.status_code == 204


def signed_in_user_id(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value is not None else None
