"""The admin shows the labeling tables and changes none of what the services write."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.labeling.conftest import TEXTS, make_sample_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client: Any) -> Any:
    user = get_user_model().objects.create_superuser("root", "root@example.org", "x" * 12)
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model", ["sampleset", "item", "job", "label", "reviewtask", "decision", "goldlabel"]
)
def test_every_labeling_table_is_listed(admin_client_: Any, model: str) -> None:
    assert admin_client_.get(reverse(f"admin:labeling_{model}_changelist")).status_code == 200


@pytest.mark.parametrize("model", ["item", "job", "label", "reviewtask", "decision", "goldlabel"])
def test_service_written_tables_cannot_be_added_here(admin_client_: Any, model: str) -> None:
    assert admin_client_.get(reverse(f"admin:labeling_{model}_add")).status_code == 403


def test_an_item_is_shown_read_only(admin_client_: Any) -> None:
    sample_set = make_sample_set(_author(), TEXTS[:1])
    item = sample_set.items.get()
    url = reverse("admin:labeling_item_change", args=[item.pk])
    page = admin_client_.get(url)
    assert page.status_code == 200 and 'name="text"' not in page.content.decode()
    admin_client_.post(url, {"text": "changed", "external_id": "x", "row_number": 1})
    item.refresh_from_db()
    assert item.text == TEXTS[0]


def _author() -> Any:
    return get_user_model().objects.get(username="root")
