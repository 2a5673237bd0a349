"""A policy's gate settings are audited by the model layer, whichever path changes them."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from policies import services
from policies.models import Policy, PolicySettingChange, SettingPath, percent_text
from tests.policies.conftest import make_policy


def admin_form(policy: Policy, **changes: Any) -> dict[str, Any]:
    """The admin change form of a policy without versions, as the browser posts it."""
    data = {
        "name": policy.name,
        "description": policy.description,
        "agreement_threshold": str(policy.agreement_threshold),
        "min_sample_size": str(policy.min_sample_size),
        "min_kappa": str(policy.min_kappa),
        "regression_tolerance": str(policy.regression_tolerance),
        "review_overlap": str(policy.review_overlap),
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }
    return data | {k: str(v) for k, v in changes.items()}


def test_threshold_is_written_one_way() -> None:
    assert [percent_text(x) for x in (0.95, 0.55, 0.5, 1.0, 0.975, 0.925, 0.5555)] == [
        "95%", "55%", "50%", "100%", "97.5%", "92.5%", "55.55%",
    ]  # fmt: skip


def test_admin_change_of_the_threshold_is_audited_and_on_the_settings_page(
    admin_user: Any, author: Any
) -> None:
    policy = make_policy(author)
    Policy.objects.filter(pk=policy.pk).update(agreement_threshold=0.55)
    PolicySettingChange.objects.all().delete()  # start from an empty audit
    policy.refresh_from_db()
    client = Client()
    client.force_login(admin_user)

    response = client.post(
        reverse("admin:policies_policy_change", args=[policy.pk]),
        admin_form(policy, agreement_threshold="0.50"),
    )

    assert response.status_code == 302
    change = PolicySettingChange.objects.get(policy=policy)
    assert (change.field, change.old_value, change.new_value) == (
        "agreement_threshold", "55%", "50%",
    )  # fmt: skip
    assert change.changed_by == admin_user and change.via == SettingPath.ADMIN
    page = client.get(reverse("labeling:policy_settings", args=[policy.pk])).content.decode()
    row = page[page.index('id="settings-audit"') :]
    assert "ana_admin" in row and "Django admin" in row
    assert "<td>55%</td><td>50%</td>" in row


def test_admin_saving_unchanged_settings_writes_nothing(admin_user: Any, author: Any) -> None:
    policy = make_policy(author)
    client = Client()
    client.force_login(admin_user)
    client.post(
        reverse("admin:policies_policy_change", args=[policy.pk]),
        admin_form(policy, description="Only the description."),
    )
    assert not PolicySettingChange.objects.exists()


def test_a_shell_save_writes_a_row_without_a_user(author: Any) -> None:
    policy = make_policy(author)
    policy.min_sample_size = 100
    policy.min_kappa = 0.4
    policy.save()

    rows = {c.field: c for c in PolicySettingChange.objects.filter(policy=policy)}
    assert set(rows) == {"min_sample_size", "min_kappa"}
    assert (rows["min_sample_size"].old_value, rows["min_sample_size"].new_value) == (
        "200", "100",
    )  # fmt: skip
    assert (rows["min_kappa"].old_value, rows["min_kappa"].new_value) == ("0.60", "0.40")
    assert all(r.changed_by is None and r.via == SettingPath.SHELL for r in rows.values())


def test_a_bulk_update_is_audited_too(author: Any) -> None:
    policy = make_policy(author)
    Policy.objects.filter(pk=policy.pk).update(agreement_threshold=0.9)
    change = PolicySettingChange.objects.get(policy=policy)
    assert (change.old_value, change.new_value, change.via) == ("95%", "90%", "shell")


def test_each_change_starts_where_the_last_one_ended(admin_user: Any, author: Any) -> None:
    """Admin, shell and the service in turn: every "from" is the "to" of the row before."""
    policy = make_policy(author)
    client = Client()
    client.force_login(admin_user)
    client.post(
        reverse("admin:policies_policy_change", args=[policy.pk]),
        admin_form(policy, agreement_threshold="0.55"),
    )
    policy.refresh_from_db()
    policy.agreement_threshold = 0.5
    policy.save()
    services.update_policy_settings(
        policy=policy, agreement_threshold=0.6, min_sample_size=200, by=admin_user
    )

    rows = list(PolicySettingChange.objects.filter(policy=policy).order_by("pk"))
    assert [(r.old_value, r.new_value, r.via) for r in rows] == [
        ("95%", "55%", "admin"), ("55%", "50%", "shell"), ("50%", "60%", "settings"),
    ]  # fmt: skip


def test_creating_a_policy_is_not_a_change(author: Any) -> None:
    make_policy(author, name="New")
    assert not PolicySettingChange.objects.exists()
