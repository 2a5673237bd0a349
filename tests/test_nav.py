"""The main menu highlights the section of the page shown, derived from where the page's view
lives (``cope_studio.lib.context``), never set by the views."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from cope_studio.lib.context import nav_section

pytestmark = pytest.mark.django_db

_CURRENT = re.compile(r'<a href="[^"]*" aria-current="page">([^<]+)</a>')


def _highlighted(client: Client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, url
    menu = response.content.decode().split('<nav class="mainnav">', 1)[1].split("</nav>", 1)[0]
    return _CURRENT.findall(menu)


@pytest.mark.parametrize(
    ("url_name", "item"),
    [
        ("policies:list", "Policies"),
        ("policies:create", "Policies"),
        ("labeling:sampleset_list", "Sample sets"),
        ("labeling:queue", "Review queue"),
        ("labeling:workers", "Workers"),
        ("labeling:apikey_list", "API keys"),
        # Try is reached from a version, so it stays under Policies though it lives in api/.
        ("labeling:try", "Policies"),
    ],
)
def test_each_section_highlights_its_menu_item(
    client: Client, admin_user: Any, url_name: str, item: str
) -> None:
    client.force_login(admin_user)
    assert _highlighted(client, reverse(url_name)) == [item]


def test_a_request_that_resolved_to_no_view_has_no_section(rf: Any) -> None:
    assert nav_section(rf.get("/nowhere/")) == ""
