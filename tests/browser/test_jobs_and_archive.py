"""The jobs page in a browser: a running job's row updates by itself and stops polling when the
job ends; a sample set archived from its page leaves the job start form and comes back."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from labeling.models import Job, JobStatus
from tests.labeling.conftest import make_sample_set, make_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_running_jobs_row_updates_live_then_stops(
    page: Any, live_server: Any, login: Any, author: Any
) -> None:
    version = make_version(author, name="Live jobs")
    sample_set = make_sample_set(author, ["a"], name="Live set")
    job = Job.objects.create(
        version=version,
        sample_set=sample_set,
        text_a="a",
        text_b="b",
        created_by=author,
        item_count=10,
        status=JobStatus.RUNNING,
        prepared_at=timezone.now(),
    )
    login(author)
    page.click("nav.mainnav >> text=Jobs")
    row = page.locator(f"#job-row-{job.pk}")
    expect(row).to_contain_text("Running")
    expect(row.locator(".job-progress-cell")).to_contain_text("0%")
    Job.objects.filter(pk=job.pk).update(done_a=10, done_b=5)
    expect(row.locator(".job-progress-cell")).to_contain_text("75%", timeout=10_000)
    Job.objects.filter(pk=job.pk).update(
        done_b=10, status=JobStatus.SUCCEEDED, finished_at=timezone.now()
    )
    expect(row).to_contain_text("Finished", timeout=10_000)
    expect(row).not_to_have_attribute("hx-trigger", "every 2s")


def test_an_archived_set_leaves_the_job_form_and_is_restored(
    page: Any, live_server: Any, login: Any, author: Any
) -> None:
    version = make_version(author, name="Archive flow")
    sample_set = make_sample_set(author, ["a", "b"], name="Scratch to retire")
    login(author)
    page.goto(f"{live_server.url}/labeling/samples/{sample_set.pk}/")
    page.click("form.archive-form button")
    expect(page.locator(".archived-banner")).to_contain_text("Archived")
    page.goto(f"{live_server.url}/labeling/samples/")
    expect(page.locator("table.data")).to_have_count(0)
    page.click("text=Archived")
    expect(page.locator("table.data")).to_contain_text("Scratch to retire")
    page.goto(f"{live_server.url}/policies/versions/{version.pk}/")
    page.wait_for_load_state("networkidle")
    expect(page.locator("select[name=sample_set] option")).to_have_count(0)
    page.goto(f"{live_server.url}/labeling/samples/{sample_set.pk}/")
    page.click(".archived-banner button")
    page.goto(f"{live_server.url}/policies/versions/{version.pk}/")
    page.wait_for_load_state("networkidle")
    expect(page.locator("select[name=sample_set]")).to_contain_text("Scratch to retire")
