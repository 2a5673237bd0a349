from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from policies.models import TwinJob
from tests.conftest import PASSWORD


def _pages(version):
    pk, vpk = version.policy.pk, version.pk
    twinjob = TwinJob.objects.create(version=version, requested_by=version.author)
    return {
        "get": [
            reverse("policies:list"),
            reverse("policies:detail", args=[pk]),
            reverse("policies:diff", args=[pk]),
            reverse("policies:version", args=[vpk]),
            reverse("policies:twin_diff", args=[vpk]),
            reverse("policies:twinjob", args=[twinjob.pk]),
        ],
        "edit_get": [
            reverse("policies:create"),
            reverse("policies:version_create", args=[pk]),
        ],
        "post": [
            reverse("policies:create"),
            reverse("policies:version_create", args=[pk]),
            reverse("policies:lint"),
            reverse("policies:twin_update", args=[vpk]),
            reverse("policies:twin_generate", args=[vpk]),
        ],
    }


def test_anonymous_is_sent_to_login(client, version):
    pages = _pages(version)
    for url in pages["get"] + pages["edit_get"]:
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/login/"), url
    for url in pages["post"]:
        response = client.post(url, {"text": "x"})
        assert response.status_code == 302 and response.url.startswith("/login/"), url


def test_outsider_gets_403_everywhere(client, outsider, version):
    client.login(username=outsider.username, password=PASSWORD)
    pages = _pages(version)
    for url in pages["get"] + pages["edit_get"]:
        assert client.get(url).status_code == 403, url
    for url in pages["post"]:
        assert client.post(url, {"text": "x"}).status_code == 403, url


@pytest.mark.parametrize("htmx", [False, True])
def test_reviewer_reads_but_cannot_edit(client, reviewer, version, twin_text, htmx):
    client.login(username=reviewer.username, password=PASSWORD)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    pages = _pages(version)
    for url in pages["get"]:
        assert client.get(url, **headers).status_code in (200, 302), url
    for url in pages["edit_get"]:
        assert client.get(url, **headers).status_code == 403, url
    for url in pages["post"]:
        assert client.post(url, {"text": "x", "twin_text": twin_text}, **headers).status_code == 403
    version.refresh_from_db()
    assert version.twin_text == twin_text and version.policy.versions.count() == 1
    assert TwinJob.objects.count() == 1


def test_reviewer_sees_no_edit_buttons(client, reviewer, version):
    client.login(username=reviewer.username, password=PASSWORD)
    body = client.get(reverse("policies:version", args=[version.pk])).content.decode()
    assert "Edit as new version" not in body and "Save twin" not in body
    assert "Generate twin" not in body
    listing = client.get(reverse("policies:list")).content.decode()
    assert "New policy" not in listing
    detail = client.get(reverse("policies:detail", args=[version.policy.pk])).content.decode()
    assert "New version" not in detail


def test_methods_are_restricted(client, author, version):
    client.login(username=author.username, password=PASSWORD)
    assert client.post(reverse("policies:version", args=[version.pk])).status_code == 405
    assert client.get(reverse("policies:lint")).status_code == 405
    assert client.get(reverse("policies:twin_update", args=[version.pk])).status_code == 405


def test_reviewer_sees_a_styled_403_that_names_the_role(reviewer: Any, version: Any) -> None:
    client = Client()
    client.force_login(reviewer)
    response = client.get(reverse("policies:version_create", args=[version.policy_id]))
    assert response.status_code == 403
    body = response.content.decode()
    assert "Your role cannot do this" in body and "reviewer" in body
    assert "Review queue" in body  # the nav of base.html: a reviewer's next step


def test_author_is_not_offered_the_review_queue(author: Any) -> None:
    client = Client()
    client.force_login(author)
    body = client.get(reverse("policies:list")).content.decode()
    assert reverse("labeling:queue") not in body
