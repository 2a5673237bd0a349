"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright against live_server.

Screenshots of key pages are kept as test artifacts under ``artifacts/screenshots``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls that tests make
# beside it are safe here because nothing else uses the connection concurrently.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("COPE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (see .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


# Chromium's console wording when the Content-Security-Policy refuses a script, a style or a
# request, and when a Permissions-Policy header does not parse.
POLICY_ERRORS = ("Content Security Policy", "Permissions-Policy")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page. Every flow runs under the studio's Content-Security-Policy: a test whose
    pages had anything refused by it fails, whatever else it checks."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.dialogs_seen = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs_seen.append(d.message), d.dismiss()))
    refused: list[str] = []

    def note(message: Any) -> None:
        if any(words in message.text for words in POLICY_ERRORS):
            refused.append(f"{page.url}: {message.text}")

    page.on("console", note)
    yield page
    # Requests the page still has in flight (a card loaded on "load", a poll) are answered
    # before the test's database goes: the server must not serve them against a flushed one.
    try:
        page.wait_for_load_state("networkidle", timeout=5_000)
    except Exception:  # noqa: BLE001 - a page that never goes quiet is closed all the same
        pass
    context.close()
    assert refused == [], "refused by the page's Content-Security-Policy or Permissions-Policy"


@pytest.fixture
def screenshot(page: Any) -> Any:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def login(page: Any, live_server: Any) -> Any:
    from tests.conftest import PASSWORD

    def do(user: Any) -> Any:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)
        return page

    return do
