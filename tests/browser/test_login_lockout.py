"""A person who mistypes their password too often is told why the right one no longer works."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _sign_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_too_many_wrong_passwords_lock_the_account_and_the_page_says_so(
    page: Any, live_server: Any, author: Any
) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(page, live_server.url, author.username, "not my password")
    _sign_in(page, live_server.url, author.username, PASSWORD)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many failed sign-ins for this account")
    expect(alert).to_contain_text(f"Try again in {settings.COPE_LOGIN_COOLOFF_MINUTES} minutes")
    expect(alert).to_contain_text("ask an admin to unlock it")
    # Still signed out: the policies page sends back to the login form.
    page.goto(f"{live_server.url}/policies/")
    expect(page.locator("#id_username")).to_be_visible()
