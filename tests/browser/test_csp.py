"""Every main page works under the Content-Security-Policy: Chromium reports no violation (no
inline script, style or foreign resource refused) and htmx still loads its panels."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from labeling.agreement import compute_agreement
from labeling.models import SampleSet, SampleSetStatus
from tests.labeling.review.test_review import make_job as make_review_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Recorded before any page script runs (Playwright's init scripts are not subject to the CSP).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def make_job(*, author: Any, mismatches: list[tuple[int, float, float]], agreed: int = 0) -> Any:
    """A finished job whose mismatches are review tasks, with the figures its pages show."""
    pairs = [(a, 1 - a) for a, _, _ in mismatches] + [(0, 0)] * agreed
    stats = compute_agreement(pairs).to_dict()
    return make_review_job(author=author, mismatches=mismatches, agreed=agreed, stats=stats)


def _pages(job: Any) -> list[str]:
    version = job.version
    policy = version.policy
    # A set still importing shows its progress bar (and polls for more).
    importing = SampleSet.objects.create(
        name="still importing", created_by=job.created_by, status=SampleSetStatus.IMPORTING
    )
    return [
        "/policies/",
        f"/policies/{policy.pk}/",
        f"/policies/versions/{version.pk}/",
        f"/policies/{policy.pk}/versions/new/?from={version.pk}",
        f"/labeling/review/?job={job.pk}",
        f"/labeling/jobs/{job.pk}/",
        f"/labeling/jobs/{job.pk}/items/",
        "/labeling/samples/",
        f"/labeling/samples/{job.sample_set.pk}/",
        f"/labeling/samples/{importing.pk}/",
        "/labeling/api-keys/",
        f"/labeling/try/?version={version.pk}",
        "/labeling/workers/",
        "/api/v1/docs",
        "/admin/",
        f"/admin/policies/policy/{policy.pk}/change/",
        f"/admin/policies/version/{version.pk}/change/",
        "/admin/policies/policy/add/",
    ]


def test_the_main_pages_run_under_the_csp_without_a_violation(
    page: Any, live_server: Any, login: Any, admin_user: Any
) -> None:
    job = make_job(author=admin_user, mismatches=[(1, 0.8, 0.3), (0, 0.4, 0.6)], agreed=2)
    page.add_init_script(RECORD_VIOLATIONS)
    login(admin_user)

    violations: dict[str, list[str]] = {}
    for path in _pages(job):
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
        found = page.evaluate("window.__csp")
        if found:
            violations[path] = found
    assert violations == {}  # and the page fixture fails the test on any console refusal


def test_htmx_panels_load_under_the_csp(
    page: Any, live_server: Any, login: Any, admin_user: Any
) -> None:
    job = make_job(author=admin_user, mismatches=[(1, 0.8, 0.3)])
    page.add_init_script(RECORD_VIOLATIONS)
    login(admin_user)
    page.goto(f"{live_server.url}/policies/versions/{job.version.pk}/")
    # The version's labeling panel is fetched by htmx on load and swapped in.
    expect(page.locator(".labeling-panel .labeling-version-panel")).to_be_visible()
    expect(page.locator(".labeling-panel")).to_contain_text(f"Job {job.pk}")
    # htmx's request indicator is styled from studio.css, not an inline <style>.
    assert page.locator("head style").count() == 0
    assert page.evaluate("window.__csp") == []
