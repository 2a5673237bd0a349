"""Exporting a version: only a finalized one, as Markdown or as JSON with provenance."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from policies import services
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_draft_version_cannot_be_exported_as_final(author: Any, version: Any) -> None:
    response = _client(author).get(reverse("policies:version_export", args=[version.pk, "json"]))
    assert response.status_code == 409
    assert "not finalized" in response.content.decode()


def test_finalized_version_exports_its_exact_text_with_provenance(
    author: Any, admin_user: Any, version: Any, policy_text: str
) -> None:
    services.finalize_version(version=version, by=admin_user)
    client = _client(author)

    md = client.get(reverse("policies:version_export", args=[version.pk, "md"]))
    assert md.status_code == 200
    assert md["Content-Type"].startswith("text/markdown")
    assert md.content.decode() == policy_text
    assert 'filename="harassment-v1.md"' in md["Content-Disposition"]

    data = json.loads(
        client.get(reverse("policies:version_export", args=[version.pk, "json"])).content
    )
    assert data["format"] == "cope-studio.policy-version/1"
    assert data["text"] == policy_text
    assert data["policy"]["name"] == version.policy.name
    assert data["version"]["number"] == 1
    assert data["version"]["finalized_by"] == admin_user.username
    assert data["twin"]["origin"] == "hand"


def test_version_page_offers_export_only_once_finalized(
    author: Any, admin_user: Any, version: Any
) -> None:
    client = _client(author)
    export_url = reverse("policies:version_export", args=[version.pk, "md"])
    assert export_url not in client.get(version.get_absolute_url()).content.decode()
    services.finalize_version(version=version, by=admin_user)
    assert export_url in client.get(version.get_absolute_url()).content.decode()


def test_outsider_cannot_export(outsider: Any, admin_user: Any, version: Any) -> None:
    services.finalize_version(version=version, by=admin_user)
    response = _client(outsider).get(reverse("policies:version_export", args=[version.pk, "md"]))
    assert response.status_code == 403


def test_only_markdown_and_json_are_export_formats(admin_user: Any, version: Any) -> None:
    # A policy may contain HTML; serving it as .html would run it when the file is opened.
    services.finalize_version(version=version, by=admin_user)
    client = _client(admin_user)
    for fmt in ("html", "exe", "md.html"):
        response = client.get(f"/policies/versions/{version.pk}/export.{fmt}")
        assert response.status_code == 404, fmt
