"""A probe where a person runs it, in a real browser on real Celery workers (the embedding
baseline on CPU): from the version page's probe card to the probe page's button, the run's
progress to its end, then the steerability score, the dead clauses and the topic leakage on the
page, each as the run's stored summary says; the finalize panel shows the same figures.

The policy has two labels: on the baseline a policy left with no Includes at all falls back to
its label names, so a one-label policy's ``DROP`` never turns a 1 into 0 and no flip would be
expected; with two, the other label's Includes remain and the score has a denominator."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.jobs.display import pct
from labeling.models import ExplainRun, ExplainStatus, PolicyEvaluation, RunKind
from policies.models import Policy, Version
from tests.labeling.conftest import make_sample_set

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery_worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_workers"),
]

TIMEOUT_MS = 180_000
POLICY = """# Harassment and threats

## Overview
This policy finds content that abuses or threatens a specific person.

## Definition of Terms
- **Target**: a specific, identifiable person.

## Interpretation of Language
- Read insults literally; quoted abuse counts only when endorsed.

## Definition of Labels

### (HA1) Targeted abuse
#### Includes
- Insults and name-calling aimed at a **Target**: idiot, loser, moron.
- Recipes for baking sourdough bread at home (no item uses it: dead on this set).
#### Excludes
- Criticism of ideas or public work.

### (TH1) Threats
#### Includes
- Threats to hurt or harm a **Target** physically.
#### Excludes
- Threats in games or sport.
"""
TEXTS = [
    "You are a worthless idiot, Sam, and everyone hates you.",
    "Shut up, you pathetic loser Alex.",
    "Lovely weather in Lisbon today.",
    "The paper's methodology is weak and the conclusions do not follow.",
    "Jo, you are a disgusting moron and an insult to your family.",
    "Our team shipped the release on time.",
    'Critique of the minister\'s budget <script>alert("x")</script>',
    "I will hurt you, Jordan, if you show up tomorrow.",
]


def test_a_probe_from_the_version_page_shows_score_dead_clauses_and_leakage(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any, admin_user: Any
) -> None:
    policy = Policy.objects.create(name="Harassment probed in a browser", created_by=author)
    version = Version.objects.create(policy=policy, number=1, text=POLICY, author=author)
    sample_set = make_sample_set(author, TEXTS, name="Evaluation set")
    PolicyEvaluation.objects.create(policy=version.policy, sample_set=sample_set)
    login(author)

    # The version page's probe card: not probed yet, one link to the probe page.
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    page.locator("#probe-card-none").wait_for()
    page.click("#probe-link")
    page.click("#probe-start")
    page.locator("#probe-status", has_text="Finished").wait_for(timeout=TIMEOUT_MS)
    run = ExplainRun.objects.get(version=version, kind=RunKind.PROBE)
    assert run.status == ExplainStatus.SUCCEEDED, run.error
    summary = run.summary
    screenshot("probe-01-page")

    # The score, the dead clauses and the leakage, each as the run's summary stores it.
    flips = summary["steerability"]["flips"]
    assert flips["expected"] > 0, summary["inversion"]
    assert page.inner_text("#probe-flips-share") == pct(flips["share"])
    assert page.inner_text("#probe-flips-count") == f"{flips['observed']} of {flips['expected']}"
    dead_shown = page.locator("#probe-dead li").evaluate_all(
        "rows => rows.map(r => r.dataset.clause)"
    )
    assert dead_shown == summary["dead"]
    assert "label/HA1/includes/2" in dead_shown  # the sourdough criterion no item uses
    leakage = summary["leakage"]
    assert page.inner_text("#probe-leakage-share") == pct(leakage["share"])
    assert page.inner_text("#probe-leakage-count") == f"{leakage['count']} of {leakage['n']}"
    assert page.locator("script", has_text='alert("x")').count() == 0

    # The version page's card now carries the score; the finalize panel shows the findings.
    page.context.clear_cookies()
    login(admin_user)
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    assert pct(flips["share"]) in page.inner_text("#probe-card-score")
    probe = page.locator(f"#finalize-probe-{version.pk}")
    probe.wait_for()
    assert f"{pct(flips['share'])} of expected flips observed" in probe.inner_text()
    assert (
        probe.locator(".probe-dead [data-clause]").evaluate_all(
            "rows => rows.map(r => r.dataset.clause)"
        )
        == summary["dead"]
    )
    assert f"{leakage['count']} of {leakage['n']}" in probe.locator(".probe-leakage").inner_text()
    screenshot("probe-02-version-finalize")
