"""Password reset by email for local accounts (Django's own views): the mail arrives, its link
sets a new password once; accounts that sign in only through the provider get no mail."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from accounts.models import ExternalIdentity
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new passphrase 42"


def _ask(client: Client, email: str) -> Any:
    return client.post("/password-reset/", {"email": email})


def _link(message: Any) -> str:
    found = re.search(r"http://testserver(/password-reset/\S+/\S+/)", message.body)
    assert found, message.body
    return found.group(1)


def test_the_login_page_links_to_the_reset_form(client: Client) -> None:
    assert 'href="/password-reset/"' in client.get("/login/").content.decode()
    form = client.get("/password-reset/")
    assert form.status_code == 200
    assert 'name="email"' in form.content.decode()


def test_the_link_in_the_mail_sets_a_new_password_once(client: Client, settings: Any) -> None:
    user = User.objects.create_user("lena", email="lena@example.org", password=PASSWORD)
    response = _ask(client, "LENA@example.org")
    assert response["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["lena@example.org"]
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert message.subject == "Reset your CoPE Studio password"
    assert '"lena"' in message.body

    link = _link(message)
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done["Location"] == "/password-reset/complete/"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not user.check_password(PASSWORD)
    assert Client().login(username="lena", password=NEW_PASSWORD)

    # Used once, the link works no more.
    again = Client().get(link, follow=True)
    assert "This link does not work" in again.content.decode()
    assert "new_password1" not in again.content.decode()


def test_a_weak_new_password_is_refused(client: Client) -> None:
    user = User.objects.create_user("lena", email="lena@example.org", password=PASSWORD)
    _ask(client, "lena@example.org")
    form_page = client.get(_link(mail.outbox[0]), follow=True)
    refused = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": "short", "new_password2": "short"}
    )
    assert refused.status_code == 200
    assert "too short" in refused.content.decode()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_no_mail_for_an_account_that_signs_in_only_through_the_provider(client: Client) -> None:
    sso_only = User.objects.create_user("sam", email="sam@example.org")
    ExternalIdentity.objects.create(user=sso_only, issuer="https://idp.example.org", subject="7")
    assert not sso_only.has_usable_password()
    response = _ask(client, "sam@example.org")
    # The same answer as for any address, so the form tells nobody which accounts exist.
    assert response["Location"] == "/password-reset/sent/"
    assert mail.outbox == []


def test_no_mail_for_an_unknown_or_inactive_address(client: Client) -> None:
    User.objects.create_user("gone", email="gone@example.org", password=PASSWORD, is_active=False)
    assert _ask(client, "nobody@example.org")["Location"] == "/password-reset/sent/"
    assert _ask(client, "gone@example.org")["Location"] == "/password-reset/sent/"
    assert mail.outbox == []
