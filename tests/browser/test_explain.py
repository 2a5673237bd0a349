"""Attribution where a person sees it, in a real browser on real Celery workers (the embedding
baseline on CPU): a twin that differs from A in one criterion only; the job runs, then its
explain run from the job page's button; the job page ranks that criterion first with every
mismatch, the review card marks it and `q` quotes it in one key, the review notes group by it,
and the API's `explain: true` names it first."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.api import keys as api_keys
from labeling.explain.services import mismatch_ids
from labeling.jobs import services as job_services
from labeling.models import Decision, Job, JobStatus
from tests.conftest import POLICY_TEXT
from tests.labeling.conftest import make_sample_set, make_version

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery_worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_workers"),
]

TIMEOUT_MS = 180_000
CHANGED = "label/HA1/includes/1"
CHANGED_TEXT = "Insults aimed at a **Target**."
TWIN = POLICY_TEXT.replace(
    "- Insults aimed at a **Target**.", "- Recipes for baking sourdough bread at home."
)
TEXTS = [
    "You are a worthless idiot, Sam, and everyone hates you.",
    "Shut up, you pathetic loser Alex.",
    "I will hurt you, Jordan, if you show up tomorrow.",
    "Lovely weather in Lisbon today.",
    "The paper's methodology is weak and the conclusions do not follow.",
    "Jo, you are a disgusting moron and an insult to your family.",
    "Our team shipped the release on time.",
    "Critique of the minister's published budget: the numbers do not add up.",
]


def _explained_job(page: Any, live_server: Any, author: Any) -> tuple[Job, list[int]]:
    version = make_version(author, name="Harassment explained", twin=TWIN)
    job = job_services.start_job(
        version=version,
        sample_set=make_sample_set(author, TEXTS),
        sample_size=None,
        by=author,
        chunk_size=8,
    )
    page.goto(f"{live_server.url}{reverse('labeling:job_detail', args=[job.pk])}")
    page.locator("#explain").wait_for(timeout=TIMEOUT_MS)  # the job finished
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    mismatches = mismatch_ids(job)
    assert mismatches, "the changed criterion must change some labels"
    if page.locator("#explain-start").count():  # not started automatically
        page.click("#explain-start")
    page.locator("#explain-status", has_text="Finished").wait_for(timeout=TIMEOUT_MS)
    return job, mismatches


def test_the_one_changed_criterion_decides_every_mismatch_everywhere_it_shows(
    page: Any,
    live_server: Any,
    login: Any,
    screenshot: Any,
    author: Any,
    reviewer: Any,
    client: Client,
) -> None:
    login(author)
    job, mismatches = _explained_job(page, live_server, author)
    n = len(mismatches)

    # The job page: that criterion first, deciding every mismatch, linked to its items.
    first = page.locator("#explain-clauses tbody tr").first
    assert first.get_attribute("data-clause") == f"A:{CHANGED}"
    assert first.locator(".explain-decides").inner_text() == str(n)
    assert f"{n} of {n} mismatch" in page.inner_text("#explain-summary")
    screenshot("explain-01-job-page")
    first.locator(".explain-decides").click()
    page.wait_for_url("**/items/**")
    assert page.locator("#items-table tbody tr").count() == n

    # The review card: the clause marked in A and B; `q` quotes it in one key.
    page.context.clear_cookies()
    login(reviewer)
    page.goto(f"{live_server.url}{reverse('labeling:queue')}?job={job.pk}&start=1")
    for _ in range(n):
        page.locator(".task-card").wait_for()
        task_id = page.locator(".task-card").get_attribute("data-task-id")
        assert page.inner_text("#deciding-a mark") == CHANGED_TEXT
        assert "sourdough" in page.inner_text("#deciding-b mark")
        if _ == 0:
            screenshot("explain-02-review-card")
        label_a = page.inner_text(".side-a .label-value").strip()
        page.keyboard.press(label_a)
        page.keyboard.press("a")
        page.keyboard.press("q")
        assert page.input_value('[name="quote"]') == CHANGED_TEXT
        page.keyboard.press("Enter")
        page.wait_for_function(
            "id => !document.querySelector(`.task-card[data-task-id='${id}']`)", arg=task_id
        )
    page.locator("#queue-empty").wait_for()
    assert set(Decision.objects.filter(task__job=job).values_list("quote", flat=True)) == {
        CHANGED_TEXT
    }

    # The review notes: one group, that clause, every decision, its quote beside it.
    page.goto(f"{live_server.url}{reverse('labeling:review_notes', args=[job.pk])}")
    group = page.locator(f'.computed-groups [data-clause="{CHANGED}"]')
    assert f"{n} decision" in group.inner_text() and CHANGED_TEXT in group.inner_text()
    assert page.locator(".computed-groups .clause-group").count() == 1
    screenshot("explain-03-notes")

    # "New version from review": the editor's notes link the group to its lines in the text.
    page.context.clear_cookies()
    login(author)
    editor = reverse("policies:version_create", args=[job.version.policy_id])
    page.goto(f"{live_server.url}{editor}?parent={job.version_id}&from_job={job.pk}")
    page.locator(".editor-layout .computed-groups a.clause-lines").click()
    selected = page.evaluate(
        "() => { const t = document.getElementById('id_text');"
        " return t.value.slice(t.selectionStart, t.selectionEnd); }"
    )
    assert selected == f"- {CHANGED_TEXT}"
    assert page.url.startswith(f"{live_server.url}{editor}")  # it stayed in the editor

    # The version page: the criterion's line carries the heat strip and links to its items.
    page.goto(f"{live_server.url}{job.version.get_absolute_url()}")
    line = page.locator("#L16")
    assert line.get_attribute("data-clause") == CHANGED
    assert line.locator(".heat-strip.heat-4").count() == 1
    assert f"{n} mismatch" in line.inner_text()
    screenshot("explain-04-version-heat")

    # The API: the removal test on A's text names the criterion first for a mismatch.
    secret = api_keys.create_key(owner=author, name="svc", scopes=["label"], by=author).secret
    content = job.sample_set.items.get(pk=mismatches[0]).text
    body = {
        "policy": job.version.policy.slug,
        "version": job.version.number,
        "allow_draft": True,
        "contents": [content],
        "explain": True,
    }
    response = client.post(
        "/api/v1/label",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 200, response.content
    (result,) = response.json()["results"]
    assert result["explain"] and result["explain"][0]["clause"] == CHANGED
