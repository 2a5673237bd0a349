"""Hostile names and policy text render inert on every policy screen."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from policies import services
from tests.conftest import POLICY_TEXT, TWIN_TEXT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAME = "<script>window.__pwned=1</script>"
PAYLOAD = (
    '\n<img src=x onerror="window.__pwned=1">\n\n'
    "[click](javascript:window.__pwned=1)\n\n"
    '<a href="javascript:window.__pwned=1" onmouseover="window.__pwned=1">hover</a>\n'
)


def _assert_inert(page: Any) -> None:
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs_seen == []
    assert page.locator("img").count() == 0
    assert page.locator('a[href^="javascript"]').count() == 0


def test_hostile_policy_renders_inert_everywhere(
    page: Any, live_server: Any, login: Any, author: Any
) -> None:
    login(author)
    page.goto(f"{live_server.url}/policies/new/")
    page.fill("#id_name", NAME)
    page.get_by_role("button", name="Create and write version 1").click()
    expect(page.locator(".page-head h1")).to_contain_text(NAME)  # shown as text
    _assert_inert(page)

    # Typed into the editor: the live preview stays inert too.
    hostile = POLICY_TEXT.replace("## Overview\n", "## Overview\n" + PAYLOAD)
    page.fill("#id_text", hostile)
    expect(page.locator("#preview")).to_contain_text("click")
    page.locator("#preview").get_by_text("click").click()
    page.locator("#preview").get_by_text("hover").hover()
    _assert_inert(page)
    page.get_by_role("button", name="Save as version 1").click()
    expect(page.locator(".msg.success")).to_be_visible()
    v1_url = page.url
    _assert_inert(page)

    policy = services.summarize_policies()[0].policy
    v1 = policy.versions.get()
    twin = TWIN_TEXT.replace("## Overview\n", "## Overview\n" + PAYLOAD + "\n")
    services.update_twin(version=v1, twin_text=twin, by=author)
    services.create_version(
        policy=policy, text=hostile + "\n" + NAME, change_note=NAME, author=author, parent=v1
    )
    for path in (
        "/policies/",
        f"/policies/{policy.pk}/",
        v1_url.replace(live_server.url, ""),
        f"/policies/{policy.pk}/diff/",
        f"/policies/versions/{v1.pk}/twin/diff/",
    ):
        page.goto(live_server.url + path)
        expect(page.locator("body")).to_contain_text(NAME)
        for link in page.locator(".markdown a, .word-diff a").all():
            link.click()
        _assert_inert(page)
