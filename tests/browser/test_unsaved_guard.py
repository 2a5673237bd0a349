"""Typed text that was not saved is not lost to one click: leaving asks first (guard.js)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.labeling.review.test_review import make_job, make_policy, make_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASTED = "# Pasted policy\n\n## Overview\n" + "A long pasted paragraph of the policy. " * 200


def dialogs(page: Any) -> list[str]:
    """The types of the dialogs the page raises (the conftest's handler dismisses them: the
    reviewer chose to stay)."""
    seen: list[str] = []
    page.on("dialog", lambda dialog: seen.append(dialog.type))
    return seen


def nav_policies(page: Any) -> Any:
    return page.locator("nav.mainnav a", has_text="Policies")


def test_leaving_the_editor_with_unsaved_text_asks_first(
    page: Any, live_server: Any, login: Any, author: Any
) -> None:
    version = make_version(make_policy(author), author)
    login(author)
    editor = f"{live_server.url}/policies/{version.policy_id}/versions/new/?parent={version.pk}"
    page.goto(editor)
    seen = dialogs(page)
    # Untouched, the page is left without a question.
    nav_policies(page).click()
    page.wait_for_url(f"{live_server.url}/policies/")
    assert seen == []

    page.goto(editor)
    seen = dialogs(page)
    page.locator("#id_text").fill(PASTED)
    page.locator("#id_text").press("End")  # typed, as a person does (user activation)
    nav_policies(page).click()
    page.wait_for_timeout(500)

    assert seen == ["beforeunload"]
    assert page.url == editor, "the page was left"
    assert page.locator("#id_text").input_value().startswith("# Pasted policy")


def test_saving_the_editor_does_not_ask(
    page: Any, live_server: Any, login: Any, author: Any
) -> None:
    version = make_version(make_policy(author), author)
    login(author)
    page.goto(f"{live_server.url}/policies/{version.policy_id}/versions/new/?parent={version.pk}")
    seen = dialogs(page)
    page.locator("#id_text").press("End")
    page.keyboard.type("\nAn added line.\n")
    page.locator("#id_change_note").fill("An added line")
    page.locator("#editor-form button[type=submit]").first.click()
    page.wait_for_url(lambda url: "/versions/new/" not in url)
    assert seen == []


def test_leaving_a_half_typed_review_note_asks_first(
    page: Any, live_server: Any, login: Any, author: Any, reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.3, 0.7)], texts=["a", "b"])
    login(reviewer)
    page.goto(f"{live_server.url}/labeling/review/?job={job.pk}")
    page.locator(".task-card").wait_for()
    seen = dialogs(page)
    page.keyboard.press("t")
    page.keyboard.type("half a thought about the cla")
    page.keyboard.press("Escape")

    nav_policies(page).click()
    page.wait_for_timeout(500)

    assert seen == ["beforeunload"]
    assert "/labeling/review/" in page.url
    assert page.locator("textarea[name=note]").input_value() == "half a thought about the cla"
    # Saving it (an htmx post) clears the guard: the next card is left without a question.
    page.locator("#task-content").click()  # away from the focused link
    page.keyboard.press("1")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    page.locator("#saved").wait_for()
    nav_policies(page).click()
    page.wait_for_url(f"{live_server.url}/policies/")
    assert seen == ["beforeunload"]
