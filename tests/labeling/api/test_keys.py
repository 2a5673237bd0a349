"""API key pages and scopes: the label_text scope (admins grant it), revoking asks first, names
refuse bidirectional controls."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.api import keys as api_keys
from labeling.models import ApiKey
from tests.conftest import PASSWORD

LIST = "labeling:apikey_list"


# label_text ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_key_has_no_label_text_scope(author: Any) -> None:
    key = api_keys.create_key(owner=author, name="svc", scopes=["read", "label"], by=author)
    assert key.api_key.can_label_text is False and key.api_key.scopes == ["read", "label"]


@pytest.mark.django_db
def test_only_an_admin_grants_label_text(author: Any, admin_user: Any, reviewer: Any) -> None:
    with pytest.raises(api_keys.ApiKeyError, match="Only an admin"):
        api_keys.create_key(owner=author, name="x", scopes=["label_text"], by=author)
    granted = api_keys.create_key(owner=author, name="x", scopes=["label_text"], by=admin_user)
    assert granted.api_key.can_label_text and granted.api_key.scopes == ["label_text"]
    mine = api_keys.create_key(owner=admin_user, name="y", scopes=["label_text"], by=admin_user)
    assert mine.api_key.can_label_text
    # A reviewer's role does not label at all: not even an admin can give them the scope.
    with pytest.raises(api_keys.ApiKeyError, match="does not allow the label_text"):
        api_keys.create_key(owner=reviewer, name="z", scopes=["label_text"], by=admin_user)


@pytest.mark.django_db
def test_the_keys_page_offers_label_text_to_admins_only_with_a_warning(
    client: Client, author: Any, admin_user: Any
) -> None:
    client.login(username=author.username, password=PASSWORD)
    html = client.get(reverse(LIST)).content.decode()
    assert 'value="label_text"' not in html and "granted by an admin only" in html
    # A forged POST is refused, not silently granted.
    response = client.post(reverse(LIST), {"name": "sneaky", "scopes": ["label", "label_text"]})
    assert response.status_code == 422 and not ApiKey.objects.exists()
    client.login(username=admin_user.username, password=PASSWORD)
    html = client.get(reverse(LIST)).content.decode()
    assert 'value="label_text"' in html and 'id="label-text-warning"' in html
    assert "skipping drafting, review and finalize" in html
    response = client.post(
        reverse(LIST), {"name": "tryout", "scopes": ["label_text"], "owner": author.pk}
    )
    assert response.status_code == 200
    key = ApiKey.objects.get()
    assert key.owner == author and key.can_label_text and not key.can_label
    assert "unreviewed text" in client.get(reverse(LIST)).content.decode()


@pytest.mark.django_db
def test_label_text_follows_the_owners_role(author: Any, admin_user: Any) -> None:
    from django.contrib.auth.models import Group

    key = api_keys.create_key(owner=author, name="t", scopes=["label_text"], by=admin_user)
    assert api_keys.has_scope(key.api_key, api_keys.LABEL_TEXT)
    assert not api_keys.has_scope(key.api_key, api_keys.LABEL)
    author.groups.set([Group.objects.get(name="reviewer")])
    api_key = ApiKey.objects.select_related("owner").get(pk=key.api_key.pk)
    assert not api_keys.has_scope(api_key, api_keys.LABEL_TEXT)


@pytest.mark.django_db
def test_admin_lists_and_filters_keys_by_label_text(client: Client, admin_user: Any) -> None:
    api_keys.create_key(owner=admin_user, name="plain", scopes=["read"], by=admin_user)
    api_keys.create_key(owner=admin_user, name="adhoc", scopes=["label_text"], by=admin_user)
    admin_user.is_superuser = True
    admin_user.save()
    client.login(username=admin_user.username, password=PASSWORD)
    url = reverse("admin:labeling_apikey_changelist")
    html = client.get(url).content.decode()
    assert "column-can_label_text" in html
    filtered = client.get(url, {"can_label_text__exact": "1"}).content.decode()
    assert "adhoc" in filtered and "plain" not in filtered


# Revoking asks first ------------------------------------------------------------------------


@pytest.mark.django_db
def test_revoking_asks_first_then_revokes(client: Client, author: Any) -> None:
    key = api_keys.create_key(owner=author, name="svc", scopes=["read"], by=author).api_key
    client.login(username=author.username, password=PASSWORD)
    url = reverse("labeling:apikey_revoke", args=[key.pk])
    listing = client.get(reverse(LIST)).content.decode()
    assert f'href="{url}"' in listing and f'hx-get="{url}"' in listing
    assert f'action="{url}"' not in listing  # no one-click revoke on the list
    page = client.get(url)
    html = page.content.decode()
    assert page.status_code == 200 and "Revoke “svc”" in html and 'name="confirm"' in html
    assert "<html" in html
    fragment = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert (
        "<html" not in fragment
        and 'name="confirm"' in fragment
        and "csrfmiddlewaretoken" in fragment
    )
    # A POST without the confirmation (the old one-click form) only asks.
    response = client.post(url)
    assert response.status_code == 200 and 'name="confirm"' in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None
    response = client.post(url, {"confirm": "on"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == author
    assert "already revoked" in client.get(url).content.decode()


@pytest.mark.django_db
def test_others_cannot_see_the_revoke_question(client: Client, author: Any, reviewer: Any) -> None:
    key = api_keys.create_key(owner=author, name="svc", scopes=["read"], by=author).api_key
    client.login(username=reviewer.username, password=PASSWORD)
    url = reverse("labeling:apikey_revoke", args=[key.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"confirm": "on"}).status_code == 403


# Names --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_key_name_with_a_bidi_override_is_refused(client: Client, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    response = client.post(reverse(LIST), {"name": "svc\u202etxt.exe", "scopes": ["read"]})
    assert response.status_code == 422
    assert "U+202E" in response.content.decode() and not ApiKey.objects.exists()
