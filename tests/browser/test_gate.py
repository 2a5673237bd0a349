"""Finalize's gate in a real browser: a chance-level kappa is refused with its reason, and
lowering the gate on the Settings page asks for a confirmation that says what it lets through.

Jobs are built directly in the database (no workers needed).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from labeling.agreement import Confusion, agreement_from_confusion
from labeling.models import Job, ReviewStatus
from policies.models import Policy, PolicySettingChange, TwinOrigin, Version
from tests.conftest import POLICY_TEXT, TWIN_TEXT
from tests.labeling.review.test_review import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _reviewed_version(author: Any, name: str, counts: tuple[int, int, int, int], **gate: Any):
    policy = Policy.objects.create(name=name, created_by=author, min_sample_size=200, **gate)
    version = Version.objects.create(
        policy=policy, number=1, text=POLICY_TEXT, twin_text=TWIN_TEXT,
        twin_origin=TwinOrigin.HAND, author=author,
    )  # fmt: skip
    stats = agreement_from_confusion(Confusion(*counts)).to_dict()
    job = make_job(author=author, version=version, stats=stats)
    job.review_tasks.update(status=ReviewStatus.RESOLVED, resolved_at=timezone.now())
    return version, job


def test_chance_level_kappa_is_refused_on_the_version_page(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, admin_user: Any
) -> None:
    # 56.0% agreement over a 55% threshold, kappa 0.097: the wordings agree at chance level.
    version, job = _reviewed_version(
        author, "Self-harm", (18, 7, 103, 122), agreement_threshold=0.55
    )
    page = login(admin_user)
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    panel = page.locator(f"#finalize-panel-{version.pk}")
    panel.wait_for()

    assert "Not ready" in panel.inner_text()
    missing = panel.locator("ul.missing li").all_inner_texts()
    assert missing == [
        "Cohen's kappa 0.097 is below the policy's minimum of 0.60 (Gwet's AC1 0.250): the two "
        "wordings agree little beyond what chance gives, whatever the percent agreement."
    ]
    figures = panel.locator(f"#gate-figures-{version.pk}").inner_text()
    assert "56.0%" in figures and "≥ 55%" in figures and "0.097" in figures
    assert "≥ 0.60" in figures and "Gwet's AC1" in figures and "0.250" in figures
    assert panel.locator("button", has_text="Finalize").count() == 0
    screenshot("finalize-refused-chance-kappa")
    assert not Version.objects.get(pk=version.pk).is_finalized
    assert Job.objects.get(pk=job.pk).frozen_at is None


def test_lowering_the_threshold_asks_for_a_confirmation(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, admin_user: Any
) -> None:
    # 90.0% agreement, kappa 0.798: refused at 95%, let through at 55%.
    version, job = _reviewed_version(author, "Lowered", (100, 10, 15, 125))
    policy = version.policy
    page = login(admin_user)
    page.goto(f"{live_server.url}/labeling/policies/{policy.pk}/settings/")
    assert page.locator("#current-threshold").inner_text() == "95%"
    assert page.input_value("#id_agreement_threshold") == "95"

    page.fill("#id_agreement_threshold", "0.55")  # a share is read as the percent it means
    page.click(".settings-form button[type=submit]")
    box = page.locator("#confirm-lowering")
    box.wait_for()
    assert "agreement threshold 95% → 55%" in box.inner_text()
    assert f"v1: agreement 90.0%, Cohen's kappa 0.798 (job #{job.pk})" in box.inner_text()
    assert page.input_value("#id_agreement_threshold") == "0.55"  # what was typed is kept
    screenshot("settings-confirm-lowering")
    policy.refresh_from_db()
    assert policy.agreement_threshold == 0.95 and not PolicySettingChange.objects.exists()

    page.check("#id_confirm")
    page.click(".settings-form button[type=submit]")
    page.wait_for_selector("#settings-audit")
    assert page.locator("#current-threshold").inner_text() == "55%"
    audit = page.locator("#settings-audit").inner_text()
    assert "agreement threshold\t95%\t55%" in audit and admin_user.username in audit
    assert "Settings page" in audit
    policy.refresh_from_db()
    assert policy.agreement_threshold == 0.55
    screenshot("settings-lowered")
