"""Browser flows: import a CSV (preview, confirm, report); run a job and watch it finish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labeling.models import Job
from tests.labeling.conftest import make_sample_set, make_version

pytestmark = pytest.mark.browser

CSV = (
    "id,text,label\n"
    "p1,You are a pathetic idiot and everyone hates you,1\n"
    "p2,I disagree with your argument about the budget,0\n"
    "p3,,0\n"
    "p1,You are a pathetic idiot and everyone hates you,1\n"
)


@pytest.fixture(autouse=True)
def data_dir(settings: Any, celery_workers: Any) -> Path:
    # The import runs in the web-side worker: uploads go where it reads them.
    settings.DATA_DIR = Path(celery_workers.env["COPE_DATA_DIR"])
    return settings.DATA_DIR


@pytest.mark.django_db(transaction=True)
def test_import_csv_preview_confirm_report(
    live_server: Any, login: Any, author: Any, screenshot: Any, tmp_path: Path
) -> None:
    page = login(author)
    csv_path = tmp_path / "posts.csv"
    csv_path.write_text(CSV, encoding="utf-8")
    page.goto(f"{live_server.url}/labeling/samples/import/")
    page.set_input_files("#id_file", str(csv_path))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#preview-table")
    assert page.locator("#preview-table tbody tr").count() == 4
    assert page.input_value("#id_text_column") == "text"
    assert page.input_value("#id_id_column") == "id"
    screenshot("sample-import-preview")
    page.fill("#id_name", "Browser posts")
    page.click("#confirm-form button[type=submit]")
    # The page shows the import's progress and reloads itself once the worker is done.
    page.wait_for_selector("#import-report", timeout=60_000)
    report = page.inner_text("#import-report")
    assert "1 empty row skipped: rows 3" in report
    assert "p1 → p1~2" in report
    assert "1 duplicate item" in report
    screenshot("sample-set-report")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_workers")
def test_run_job_from_version_panel_and_watch_it_finish(
    live_server: Any, login: Any, author: Any, screenshot: Any
) -> None:
    version = make_version(author)
    texts = [
        "You are a worthless idiot, Sam.",
        "I will hurt you, Jordan.",
        "The paper's methodology is weak.",
        "Lovely weather in Lisbon today.",
        "Shut up, you pathetic loser.",
        "Critique of the minister's budget.",
    ] * 4
    sample_set = make_sample_set(author, texts, name="Browser sample")
    # The chart draws deciding jobs only (at least the minimum sample labeled).
    type(version.policy).objects.filter(pk=version.policy_id).update(min_sample_size=24)
    page = login(author)
    page.goto(f"{live_server.url}/labeling/versions/{version.pk}/panel/")
    page.select_option("#id_sample_set", str(sample_set.pk))
    page.click(".run-job-form button[type=submit]")
    page.wait_for_url("**/labeling/jobs/*/")
    page.wait_for_selector("#agreement", timeout=120_000)
    job = Job.objects.get()
    assert job.status == "succeeded"
    assert page.inner_text("#done-a") == "24" and page.inner_text("#done-b") == "24"
    assert "%" in page.inner_text("#stat-agreement")
    assert page.locator("#agreement-chart svg.chart").count() == 1
    assert "a weak classifier, not CoPE" in page.inner_text("#job-status")
    screenshot("job-finished")
    page.goto(f"{live_server.url}/labeling/policies/{version.policy_id}/panel/")
    assert page.locator("#policy-chart svg circle").count() >= 1
    screenshot("policy-panel")
