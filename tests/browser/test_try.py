"""The Try box in Chromium, on the real model worker: the editor's unsaved text and the version
page, results shown in place with A/B disagreement highlighted and content escaped, and only
labeled rows counted; and the API keys page of the same feature, where revoking asks first."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.labeling.conftest import make_version

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery_worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_workers"),
]

WORKER_TIMEOUT_MS = 150_000
ABUSE = "You are a worthless idiot, Sam, and everyone hates you."


@pytest.fixture(autouse=True)
def _patient(settings: Any) -> None:
    settings.COPE_LIVE_TIMEOUT = 120.0  # a loaded test machine; the 503 test sets its own


CALM = "Lovely weather in Lisbon today."
HOSTILE = '<img src=x onerror="window.pwned=1"> you pathetic loser Alex'
# A twin that flips the label of weather talk, so A and B disagree on CALM.
WEATHER_TWIN = """# Weather talk

## Overview
Finds posts about the weather.

## Definition of Labels

### (W1) Weather
#### Includes
- Talk about the weather today, sunny or rainy.
#### Excludes
- Insults aimed at a person.
"""


def test_try_on_the_editor_uses_the_unsaved_text(
    live_server: Any, login: Any, author: Any, screenshot: Any
) -> None:
    version = make_version(author)
    page = login(author)
    page.goto(f"{live_server.url}/policies/{version.policy.pk}/versions/new/?parent={version.pk}")
    page.locator("details.twin-editor").evaluate("d => { d.open = true; }")
    page.fill("#id_twin_text", WEATHER_TWIN)  # unsaved: the version's twin is different
    page.fill("#try-contents", "\n".join([ABUSE, CALM, HOSTILE]))
    page.click("#try button[type=submit]")
    page.locator("#try-results table.try-table").wait_for(timeout=WORKER_TIMEOUT_MS)
    rows = page.locator("#try-results tr.try-row")
    assert rows.count() == 3
    assert "unsaved text" in page.inner_text("#try-results")
    calm = rows.nth(1)
    assert "disagree" in (calm.get_attribute("class") or "")
    assert "A ≠ B" in calm.inner_text()
    assert rows.nth(0).locator("td.side-a .label").inner_text() == "1"
    assert HOSTILE in rows.nth(2).locator(".try-content").inner_text()  # shown as text
    assert page.evaluate("window.pwned") is None
    assert page.url.endswith(f"?parent={version.pk}")  # no page change; nothing saved
    assert version.policy.versions.count() == 1
    screenshot("try-editor")


def test_try_on_the_version_page(live_server: Any, login: Any, author: Any) -> None:
    version = make_version(author)
    page = login(author)
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    page.fill("#try-contents", f"{ABUSE}\n\n{CALM}\n")
    page.click("#try button[type=submit]")
    page.locator("#try-results table.try-table").wait_for(timeout=WORKER_TIMEOUT_MS)
    rows = page.locator("#try-results tr.try-row")
    assert rows.count() == 2
    labels = [rows.nth(i).locator("td.side-a .label").inner_text() for i in range(2)]
    assert labels == ["1", "0"]
    assert rows.nth(0).locator("td.side-b .p1").inner_text().startswith("p(1) ")
    summary = page.inner_text("#try-results .try-summary")
    assert "embedding" in summary and "weak baseline" in summary
    # One block: the whole box is one content.
    page.fill("#try-contents", f"{ABUSE}\n{CALM}")
    page.check("#try input[name=mode][value=block]")
    page.click("#try button[type=submit]")
    # A locator, not wait_for_function: the page's Content-Security-Policy forbids eval.
    expect(page.locator("#try-results tr.try-row")).to_have_count(1, timeout=WORKER_TIMEOUT_MS)


def test_try_counts_only_the_rows_it_labeled(
    live_server: Any, login: Any, author: Any, settings: Any
) -> None:
    settings.COPE_CONTEXT_LIMIT = 1000
    version = make_version(author)
    page = login(author)
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    long = "insult " * 900
    page.fill("#try-contents", f"{long}\n{long} again")
    page.click("#try button[type=submit]")
    page.locator("#try-results table.try-table").wait_for(timeout=WORKER_TIMEOUT_MS)
    summary = page.inner_text("#try-results .try-summary")
    assert "A and B agree on 0 of 0 labeled; 2 too long to label" in summary
    assert "agree on all" not in summary
    assert page.locator("#try-results .badge.bad").count() == 4  # too long, on A and on B


def test_revoking_a_key_asks_in_place_first(live_server: Any, login: Any, author: Any) -> None:
    from labeling.api import keys as api_keys
    from labeling.models import ApiKey

    api_keys.create_key(owner=author, name="svc", scopes=["read"], by=author)
    page = login(author)
    page.goto(f"{live_server.url}/labeling/api-keys/")
    page.click("tr[data-key] a.revoke")
    question = page.locator("tr[data-key] form.revoke-confirm")
    question.wait_for()
    assert page.url.endswith("/labeling/api-keys/")  # asked in place, by htmx
    assert ApiKey.objects.get().revoked_at is None
    question.locator("button[type=submit]").click()
    page.locator("tr[data-key] .badge.bad").wait_for()
    assert ApiKey.objects.get().revoked_at is not None
