"""Suggested rewrites where a person asks for them, in a real browser on real Celery workers: the
GPU worker's LLM is the loopback OpenAI-compatible chat server, the labels the embedding
baseline's.

The version's criterion is about sourdough recipes where the twin has name-calling, so the two
wordings split on the insults. From the clause's suggestions page the author asks for rewrites;
the section updates by itself until the candidates are listed, each with its rationale and a
link to its what-if page, the one identical to the clause marked as not tried, and the prompt
sent shown on request with a reviewer's hostile note in it as inert text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import include, path, reverse

from cope_studio import urls as project_urls
from labeling import urls as labeling_urls
from labeling.models import Decision, ExplainRun, GoldLabel, PolicyEvaluation, ReviewTask, RunKind
from labeling.whatif import urls as whatif_urls
from labeling.whatif.suggest_views import suggest_urlpatterns
from policies.models import Policy, Version
from tests.browser.test_whatif import AMBIGUOUS, CLAUSE, ROWS, TIMEOUT_MS, TWIN, _finished_job
from tests.celery_workers import FAKE_TWIN_MODEL
from tests.labeling.conftest import make_sample_set
from tests.worker.fake_openai_server import FakeOpenAIServer


def _with_suggest_urls() -> list[Any]:
    """The project's URLs with the what-if pages and these in ``labeling`` (whether or not the
    project includes them yet)."""
    names = {getattr(p, "name", None) for p in labeling_urls.urlpatterns}
    extra = [p for p in [*whatif_urls.urlpatterns, *suggest_urlpatterns] if p.name not in names]
    labeling = path("labeling/", include(([*labeling_urls.urlpatterns, *extra], "labeling")))
    rest = [p for p in project_urls.urlpatterns if getattr(p, "app_name", None) != "labeling"]
    return [labeling, *rest]


urlpatterns = _with_suggest_urls()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery_worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_workers"),
    pytest.mark.urls(__name__),
]
NOTE = '<img src=x onerror="alert(1)"> the criterion should be about insults'
CANDIDATES = [
    {
        "rewrite": "Insults aimed at a **Target**.",
        "paraphrase": "Calling a **Target** names such as idiot, loser or moron.",
        "rationale": "The reviewers read the criterion as being about insults.",
    },
    {
        "rewrite": "Recipes for baking sourdough bread at home.",
        "paraphrase": "How to bake sourdough at home.",
        "rationale": "Keeps it.",
    },
]


def test_the_author_asks_for_rewrites_and_reads_the_candidates_and_the_prompt(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, settings: Any,
    twin_server: FakeOpenAIServer,
) -> None:  # fmt: skip
    settings.COPE_TWIN_BACKEND = "openai"
    policy = Policy.objects.create(name="Harassment suggest", created_by=author, min_sample_size=1)
    version = Version.objects.create(
        policy=policy, number=1, text=AMBIGUOUS, twin_text=TWIN, author=author
    )
    sample_set = make_sample_set(author, [t for t, _ in ROWS], name="Evaluation set")
    PolicyEvaluation.objects.create(policy=policy, sample_set=sample_set, chosen_by=author)
    items = list(sample_set.items.order_by("row_number"))
    GoldLabel.objects.bulk_create(
        [
            GoldLabel(policy=policy, item=item, label=gold, decided_by=author)
            for item, (_, gold) in zip(items, ROWS, strict=True)
        ]
    )
    job = _finished_job(version, sample_set, author)
    task = ReviewTask.objects.filter(job=job).order_by("item_id").first()
    assert task is not None, "the ambiguous criterion must split the wordings"
    Decision.objects.create(task=task, reviewer=author, label="1", wording="b", note=NOTE)
    twin_server.state.suggest_text = json.dumps({"candidates": CANDIDATES})
    login(author)
    try:
        url = reverse("labeling:suggest", args=[version.pk]) + f"?clause={CLAUSE}"
        page.goto(f"{live_server.url}{url}")
        page.click("#suggest-ask")
        page.locator("#suggestion-list").wait_for(timeout=TIMEOUT_MS)
    finally:
        twin_server.state.suggest_text = ""
    run = ExplainRun.objects.get(kind=RunKind.SUGGEST, version=version)
    assert run.llm_model == FAKE_TWIN_MODEL
    [child] = ExplainRun.objects.filter(parent=run)
    row = page.locator(f'[data-candidate="{child.pk}"]')
    assert CANDIDATES[0]["rationale"] in row.inner_text()
    href = row.locator("a.candidate-link").get_attribute("href")
    assert href == reverse("labeling:whatif_run", args=[child.pk])
    page.click("#suggest-problems summary")
    assert "current wording" in page.inner_text("#suggest-problems")
    page.click("#suggest-prompt summary")
    prompt = page.inner_text("#suggest-prompt pre")
    assert f"| {NOTE}" in prompt and page.locator("#suggest-prompt img").count() == 0
    screenshot("suggest-01-candidates")
    assert page.dialogs_seen == []  # the note's markup never ran
