"""A what-if edit where a person makes it, in a real browser on real Celery workers (the
embedding baseline on CPU).

The version's text has one criterion that does not say what the label is about (sourdough
recipes where the twin has name-calling): the two wordings disagree on the insults, and the
text misses them against gold. From the version page's what-if card the author rewrites that
criterion, reads the before -> after table and the fixed / broken lists as the run stored them,
and makes it a version; the new version's first job, on the same items, shows the agreement the
what-if predicted."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from labeling.jobs import services as job_services
from labeling.jobs.display import pct
from labeling.models import (
    ExplainRun,
    ExplainStatus,
    GoldLabel,
    Job,
    JobStatus,
    PolicyEvaluation,
    RunKind,
)
from policies.models import Policy, Version
from tests.celery_workers import wait_for
from tests.conftest import POLICY_TEXT, TWIN_TEXT
from tests.labeling.conftest import make_sample_set

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery_worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_workers"),
]

TIMEOUT_MS = 180_000
CLAUSE = "label/HA1/includes/1"
FIXED_WORDING = "- Insults aimed at a **Target**."
AMBIGUOUS = POLICY_TEXT.replace(FIXED_WORDING, "- Recipes for baking sourdough bread at home.")
TWIN = TWIN_TEXT.replace(
    "- Name-calling directed at a **Target**.",
    "- Insulting a **Target** with names such as idiot, loser or moron.",
)
# (text, gold): the insults are 1, the rest 0.
ROWS = [
    ("You are a worthless idiot, Sam, and everyone hates you.", "1"),
    ("Shut up, you pathetic loser Alex.", "1"),
    ("Jo, you are a disgusting moron and an insult to your family.", "1"),
    ("Lovely weather in Lisbon today.", "0"),
    ("The paper's methodology is weak and the conclusions do not follow.", "0"),
    ("Our team shipped the release on time.", "0"),
    ("Critique of the minister's published budget: the numbers do not add up.", "0"),
    ('How often should I water my fern? <script>alert("x")</script>', "0"),
]


def _finished_job(version: Version, sample_set: Any, author: Any) -> Job:
    job = job_services.start_job(
        version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=8
    )
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED,
        timeout=TIMEOUT_MS / 1000,
        what=f"job {job.pk} to finish",
    )
    job.refresh_from_db()
    return job


def test_a_whatif_edit_fixes_the_ambiguous_clause_and_its_version_shows_the_prediction(
    page: Any, live_server: Any, login: Any, screenshot: Any, author: Any
) -> None:
    policy = Policy.objects.create(name="Harassment what-if", created_by=author, min_sample_size=1)
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
    assert job.stats["disagree"] > 0, "the ambiguous criterion must split the wordings"
    login(author)

    # The version page's what-if card: pick the criterion, then edit it.
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    page.locator("#whatif-card").wait_for()
    page.select_option("#whatif-clause", CLAUSE)
    page.click("#whatif-picker button")
    assert "sourdough" in page.inner_text("#whatif-wording-a")
    assert "idiot, loser or moron" in page.inner_text("#whatif-wording-b")
    page.fill("#id_edit_a", FIXED_WORDING)
    page.click("#whatif-submit")

    # The run's page: progress, then the table as the run stored it.
    page.wait_for_url("**/whatif/*/")
    page.locator("#whatif-results").wait_for(timeout=TIMEOUT_MS)
    run = ExplainRun.objects.get(kind=RunKind.WHATIF, version=version)
    assert run.status == ExplainStatus.SUCCEEDED and run.job_id == job.pk
    data = run.summary
    screenshot("whatif-01-results")
    whole = page.locator('[data-figure="whole"]')
    assert whole.locator(".before").inner_text() == pct(data["whole"]["before"]["agreement"])
    assert whole.locator(".after").inner_text() == pct(data["whole"]["after"]["agreement"])
    assert data["whole"]["after"]["agreement"] > data["whole"]["before"]["agreement"]
    affected = page.locator('[data-figure="affected"]')
    assert affected.locator(".after").inner_text() == pct(data["affected"]["after"]["agreement"])
    recall = page.locator('[data-figure="gold-recall"]')
    assert recall.locator(".before").inner_text() == pct(data["gold"]["before"]["recall"])
    assert recall.locator(".after").inner_text() == pct(data["gold"]["after"]["recall"])

    # Fixed and broken, each with its content, as the summary lists them.
    changed = data["changed"]
    assert changed["fixed_count"] > 0, "the rewording must fix an insult against gold"
    fixed_ids = {int(x) for x in page.locator("#whatif-fixed li").evaluate_all(
        "els => els.map(e => e.dataset.item)")}  # fmt: skip
    assert fixed_ids == {row["item"] for row in changed["fixed"]}
    insult_ids = {item.pk for item, (_, gold) in zip(items, ROWS, strict=True) if gold == "1"}
    assert fixed_ids <= insult_ids
    assert page.locator("#whatif-broken li").count() == len(changed["broken"])
    assert page.inner_text("#whatif-broken .whatif-count") == str(changed["broken_count"])
    predicted = page.inner_text("#whatif-predicted strong")
    assert predicted == pct(data["predicted"]["agreement"])

    # Make it a version: the draft's page, which links back to this evidence.
    page.fill("#id_change_note", "Name the insults the criterion is about.")
    page.click("#whatif-make-submit")
    page.wait_for_url("**/versions/*/")
    made = Version.objects.get(policy=policy, parent=version)
    assert page.url.endswith(made.get_absolute_url())
    page.locator("#whatif-evidence").wait_for()
    assert page.get_attribute("#whatif-evidence", "href").endswith(f"/whatif/{run.pk}/")
    screenshot("whatif-02-new-version")

    # The new version's first job on the same items shows the predicted agreement.
    new_job = _finished_job(made, sample_set, author)
    page.goto(f"{live_server.url}{reverse('labeling:job_detail', args=[new_job.pk])}")
    assert page.inner_text("#stat-agreement") == predicted
    assert new_job.stats["n"] == data["predicted"]["n"]
