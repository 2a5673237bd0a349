"""A person signs in through the organisation's OpenID provider (a real one, run locally) and
lands in the studio with the role their provider groups give; logging out ends both sessions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts import oidc
from policies.roles import ensure_roles
from tests.accounts.conftest import configure
from tests.oidc_provider.fixture import PASSWORD, RunningProvider, running_provider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provider(live_server: Any, tmp_path: Any, settings: Any) -> Iterator[RunningProvider]:
    with running_provider(tmp_path / "provider", studio_urls=[live_server.url]) as running:
        configure(settings, running)
        # As the settings derive it from COPE_OIDC_ISSUER: logging out redirects there.
        directives = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
        settings.CONTENT_SECURITY_POLICY = {
            "DIRECTIVES": {**directives, "form-action": ["'self'", running.url]}
        }
        ensure_roles()
        yield running
    oidc._discovered.clear()


def _sign_in_at_provider(page: Any, username: str) -> None:
    page.fill("#provider-username", username)
    page.fill("#provider-password", PASSWORD)
    page.click("button[type=submit]")


def test_signing_in_through_the_provider_lands_with_the_mapped_role(
    page: Any, live_server: Any, provider: RunningProvider, screenshot: Any
) -> None:
    page.goto(f"{live_server.url}/login/")
    screenshot("sso-login")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(f"{provider.url}/login/**")
    _sign_in_at_provider(page, "alice")
    page.wait_for_url(f"{live_server.url}/policies/")
    # alice is in the provider's author group: she may write policies, but not review.
    expect(page.get_by_role("link", name="New policy")).to_be_visible()
    expect(page.get_by_role("link", name="Review queue")).to_have_count(0)
    screenshot("sso-signed-in-author")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{live_server.url}/login/")
    # The provider's session ended too: signing in again asks for the password again.
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(f"{provider.url}/login/**")
    expect(page.locator("#provider-password")).to_be_visible()


def test_a_reviewer_lands_with_the_review_queue_and_no_authoring(
    page: Any, live_server: Any, provider: RunningProvider
) -> None:
    page.goto(f"{live_server.url}/policies/")
    page.wait_for_url(f"{live_server.url}/login/**")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    _sign_in_at_provider(page, "rita")
    page.wait_for_url(f"{live_server.url}/policies/")
    expect(page.get_by_role("link", name="Review queue")).to_be_visible()
    expect(page.get_by_role("link", name="New policy")).to_have_count(0)
