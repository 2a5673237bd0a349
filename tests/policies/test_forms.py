"""Policy names: a bidirectional control character is refused, on the form and the page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from policies.forms import PolicyForm
from policies.models import Policy

NAMES = ["Invoice\u202etxt.exe", "Hate\u2066 speech", "Spam\u200f", "Scam\u061c"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", NAMES)
def test_policy_name_with_a_bidi_control_is_refused(name: str) -> None:
    form = PolicyForm(
        {"name": name, "description": "", "agreement_threshold": "0.9", "min_sample_size": "50"}
    )
    assert not form.is_valid()
    assert "right-to-left or left-to-right control characters" in form.errors["name"][0]
    assert f"U+{ord(next(c for c in name if not c.isascii())):04X}" in form.errors["name"][0]


@pytest.mark.django_db
def test_plain_unicode_names_are_kept() -> None:
    form = PolicyForm(
        {"name": " Ódio  —  خطاب ", "agreement_threshold": "0.9", "min_sample_size": "50"}
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == "Ódio — خطاب"


@pytest.mark.django_db
def test_new_policy_page_refuses_a_bidi_name_and_creates_nothing(author: Any) -> None:
    client = Client()
    client.force_login(author)
    response = client.post(
        reverse("policies:create"),
        {"name": "Harass\u202ement", "agreement_threshold": "0.9", "min_sample_size": "50"},
    )
    assert response.status_code == 200
    assert "U+202E at character 7" in response.content.decode()
    assert not Policy.objects.exists()
