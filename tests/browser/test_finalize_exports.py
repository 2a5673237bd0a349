"""Finalize refusals, the weak-label override and the exports, in a real browser.

Jobs are built directly in the database (no workers needed): what is under test is what an
admin sees and does on the version page.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone

from labeling.agreement import Confusion, agreement_from_confusion
from labeling.models import Job, ReviewStatus
from policies.models import Policy, TwinOrigin, Version
from tests.conftest import POLICY_TEXT, TWIN_TEXT
from tests.labeling.review.test_review import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _version(author: Any, name: str, twin: str) -> Version:
    policy = Policy.objects.create(
        name=name, created_by=author, agreement_threshold=0.8, min_sample_size=10
    )
    return Version.objects.create(
        policy=policy, number=1, text=POLICY_TEXT, twin_text=twin,
        twin_origin=TwinOrigin.HAND, author=author,
    )  # fmt: skip


def _weak_reviewed_job(version: Version, author: Any) -> Job:
    confusion = Confusion(a1b1=3, a1b0=1, a0b1=1, a0b0=9)
    job = make_job(
        author=author,
        version=version,
        agreed=12,
        stats=agreement_from_confusion(confusion).to_dict(),
    )
    Job.objects.filter(pk=job.pk).update(backend="embedding", model_id="all-MiniLM-L6-v2")
    job.review_tasks.update(status=ReviewStatus.RESOLVED, resolved_at=timezone.now())
    return job


def _panel(page: Any, live_server: Any, version: Version) -> Any:
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    panel = page.locator(f"#finalize-panel-{version.pk}")
    panel.wait_for()
    return panel


def test_a_nearly_copied_twin_is_flagged_and_cannot_be_finalized(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, admin_user: Any
) -> None:
    near = POLICY_TEXT.replace("Insults aimed at", "Insults directed at")
    version = _version(author, "Nearly a copy", near)
    _weak_reviewed_job(version, author)
    page = login(admin_user)
    panel = _panel(page, live_server, version)
    missing = panel.locator("ul.missing li").all_inner_texts()
    assert missing[0].startswith("The twin is nearly a copy of the text:"), missing
    # The weak labels are not the only condition missing: no override is offered.
    assert panel.locator(".override-form").count() == 0
    warning = page.locator("#twin .changed-share")
    assert warning.get_attribute("data-nearly-copy") == "true"
    assert "agreement between the two will be flattering" in warning.inner_text()
    screenshot("finalize-refused-nearly-a-copy")
    assert not Version.objects.get(pk=version.pk).is_finalized


def test_weak_labels_finalize_only_with_a_reason_then_export(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, admin_user: Any
) -> None:
    version = _version(author, "Weak but reviewed", TWIN_TEXT)
    job = _weak_reviewed_job(version, author)
    page = login(admin_user)
    panel = _panel(page, live_server, version)
    assert "labeled by the CPU baseline" in panel.locator("ul.missing").inner_text()
    assert page.locator("#exports").inner_text().count("finalized") >= 1  # says when it exports
    screenshot("finalize-weak-override-offered")

    # An empty reason is refused by the server too (the browser's `required` aside).
    page.evaluate(
        f"document.querySelector('#id_override_reason-{version.pk}').removeAttribute('required')"
    )
    panel.locator(".override-form button[type=submit]").click()
    page.locator(f"#finalize-panel-{version.pk} .msg.error").wait_for()
    assert "No override reason was given." in page.locator(".msg.error").inner_text()
    assert not Version.objects.get(pk=version.pk).is_finalized

    page.fill(f"#id_override_reason-{version.pk}", "Pilot on the baseline; GPU arrives in May.")
    page.locator(f"#finalize-panel-{version.pk} .override-form button[type=submit]").click()
    page.locator(f"#finalize-panel-{version.pk} .badge", has_text="Finalized").wait_for()
    assert "GPU arrives in May." in page.locator(".page-head .override-reason").inner_text()
    screenshot("finalize-weak-override-done")
    version.refresh_from_db()
    assert version.finalize_override == "Pilot on the baseline; GPU arrives in May."
    assert Job.objects.get(pk=job.pk).frozen_at is not None

    # Exports: the text byte for byte, the bundle with the override, the per-item CSV.
    with page.expect_download() as md:
        page.click("#exports a:has-text('Policy text (.md)')")
    assert open(md.value.path(), "rb").read() == POLICY_TEXT.encode()
    assert md.value.suggested_filename == "weak-but-reviewed-v1.md"
    with page.expect_download() as bundle:
        page.click("#exports a:has-text('Bundle with provenance (.json)')")
    data = json.loads(open(bundle.value.path(), encoding="utf-8").read())
    entry = data["versions"][0]
    assert entry["finalize_override"] == "Pilot on the baseline; GPU arrives in May."
    assert entry["finalize_evidence"]["weak_backend"] is True
    assert entry["finalize_evidence"]["job_id"] == job.pk
    with page.expect_download() as items:
        page.click("#exports a:has-text('Deciding job, per item (.csv)')")
    lines = open(items.value.path(), encoding="utf-8").read().splitlines()
    assert lines[0].startswith("item_id,external_id,text,label_a") and len(lines) == 1 + 14
