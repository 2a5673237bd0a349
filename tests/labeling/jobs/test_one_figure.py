"""One meaning of "a version's agreement": every page shows the deciding job's figure.

A version's deciding job (``labeling.jobs.evaluation``) is its latest succeeded twin job on the
policy's evaluation set at the minimum sample. Once a version has one, nothing else a person
runs moves the figure any page shows for it: a 1-item test run, a partial job, a run on another
sample set, or a later rerun of an older version.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.api import keys as api_keys
from labeling.jobs import services
from labeling.models import Job, JobStatus
from labeling.tasks import record_chunk
from policies.models import Policy, Version
from policies.services import summarize_policies
from tests.conftest import PASSWORD, POLICY_TEXT, TWIN_TEXT
from tests.labeling.conftest import LABELED_TEXTS, fake_result, make_sample_set, make_version

MIN_SAMPLE = 4
# Under the fake scorer (``fake_label``), 5 of the 7 items of LABELED_TEXTS get the same label
# under both wordings: every twin job of every version on the whole set agrees on 71.4%.
DECIDING = "71.4%"


def run_job(
    version: Version,
    sample_set: Any,
    author: Any,
    sent: list[dict[str, Any]],
    capture: Any,
    *,
    sample_size: int | None = None,
    fail_first_chunk: bool = False,
) -> Job:
    """Start a job and record every chunk the fake scorer answers, as the workers would."""
    with capture(execute=True):
        job = services.start_job(
            version=version,
            sample_set=sample_set,
            sample_size=sample_size,
            seed=1,
            by=author,
            chunk_size=2,
        )
    first = True
    handled = {id(r) for r in sent if r["job_id"] != job.pk}
    while pending := [r for r in sent if id(r) not in handled]:
        request = pending[0]
        handled.add(id(request))
        error = "CUDA out of memory" if fail_first_chunk and first else ""
        first = False
        with capture(execute=True):
            record_chunk(fake_result(request, error=error))
    job.refresh_from_db()
    return job


def _versions(author: Any) -> tuple[Version, Version, Version]:
    v1 = make_version(author, name="One figure", number=1)
    v2 = make_version(author, name="One figure", number=2)
    v3 = make_version(author, name="One figure", number=3)
    Version.objects.filter(pk=v2.pk).update(text=POLICY_TEXT + "\nv2\n", twin_text=TWIN_TEXT)
    Policy.objects.filter(pk=v1.policy_id).update(min_sample_size=MIN_SAMPLE)
    for v in (v1, v2, v3):
        v.refresh_from_db()
    return v1, v2, v3


@pytest.fixture
def history(
    author: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> dict[str, Any]:
    """v1 and v2 each decided on the evaluation set; then what must not move v2's figure."""
    v1, v2, v3 = _versions(author)
    evaluation = make_sample_set(author, LABELED_TEXTS, name="Evaluation")
    other = make_sample_set(author, ["nice weather today"] * 5, name="Other")

    def run(version: Version, sample_set: Any = evaluation, **kwargs: Any) -> Job:
        return run_job(
            version, sample_set, author, sent, django_capture_on_commit_callbacks, **kwargs
        )

    v1_first = run(v1)
    deciding = run(v2)
    distractors = {
        "test run": run(v2, sample_size=1),
        "partial": run(v2, fail_first_chunk=True),
        "other set": run(v2, other),
        "v3 test run": run(v3, sample_size=1),
        "v1 rerun": run(v1),
    }
    # The setup is what the test says it is.
    assert v1_first.status == deciding.status == JobStatus.SUCCEEDED
    assert deciding.stats["n"] == 7 and f"{deciding.stats['p_o']:.1%}" == DECIDING
    assert distractors["test run"].status == JobStatus.SUCCEEDED
    assert distractors["test run"].stats["n"] == 1 < MIN_SAMPLE
    assert distractors["partial"].status == JobStatus.PARTIAL
    assert distractors["partial"].stats["n"] >= MIN_SAMPLE
    assert f"{distractors['partial'].stats['p_o']:.1%}" != DECIDING
    assert distractors["other set"].stats["p_o"] == 1.0
    assert distractors["v3 test run"].status == JobStatus.SUCCEEDED
    # Every distractor finished after the deciding job: "the newest figure" would be one of them.
    assert all(j.finished_at >= deciding.finished_at for j in distractors.values())
    return {"versions": (v1, v2, v3), "deciding": deciding, "distractors": distractors}


def _client(user: Any) -> Client:
    client = Client()
    client.login(username=user.username, password=PASSWORD)
    return client


def test_the_policy_list_shows_the_deciding_jobs_figure(author: Any, history: Any) -> None:
    v1, v2, v3 = history["versions"]
    html = _client(author).get(reverse("policies:list")).content.decode()
    row = next(r for r in re.findall(r"<tr>.*?</tr>", html, re.S) if "One figure" in r)
    text = re.sub(r"<[^>]+>", " ", row)
    assert DECIDING in text
    # The latest version is v3 (no deciding job): the figure is v2's, not v1's rerun.
    assert re.search(r"\bv2\b", text) and not re.search(r"\bv1\b", text)


def test_the_policy_panels_chart_and_rows_show_the_deciding_jobs(author: Any, history: Any) -> None:
    v1, v2, v3 = history["versions"]
    deciding = history["deciding"]
    url = reverse("labeling:policy_panel", args=[v2.policy_id])
    html = _client(author).get(url).content.decode()
    chart = html[html.index("<svg") : html.index("</svg>")]
    assert f"v2 agreement: {DECIDING} (n=7)" in chart
    assert ">v3<" not in chart  # only a test run: no deciding job, no point
    marked = re.findall(r"Job (\d+)</a>\s*<span[^>]*>deciding", html)
    assert str(deciding.pk) in marked
    # v1's rerun is v1's deciding job now (its own version's figure); no other one decides.
    others = {str(j.pk) for name, j in history["distractors"].items() if name != "v1 rerun"}
    assert not others & set(marked)


def test_the_version_panel_shows_the_deciding_jobs_figure(author: Any, history: Any) -> None:
    v1, v2, v3 = history["versions"]
    deciding = history["deciding"]
    client = _client(author)
    html = client.get(reverse("labeling:version_panel", args=[v2.pk])).content.decode()
    summary = re.search(r'class="version-figure".*?</p>', html, re.S)
    assert summary is not None
    assert DECIDING in summary.group(0) and f"Job {deciding.pk}" in summary.group(0)
    html = client.get(reverse("labeling:version_panel", args=[v3.pk])).content.decode()
    summary = re.search(r'class="version-figure".*?</p>', html, re.S)
    assert summary is not None and "No job decides" in summary.group(0)


def test_the_api_shows_only_the_deciding_jobs_figures(
    reviewer: Any, history: Any, client: Client
) -> None:
    v1, v2, v3 = history["versions"]
    deciding = history["deciding"]
    secret = api_keys.create_key(owner=reviewer, name="dash", scopes=["read"], by=reviewer).secret
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    base = f"/api/v1/policies/{v2.policy.slug}/versions"
    figures = client.get(f"{base}/2", **auth).json()["figures"]
    assert figures["job_id"] == deciding.pk and figures["deciding"] is True
    assert f"{figures['agreement']:.1%}" == DECIDING and figures["labeled_both"] == 7
    # v3 has only a 1-item test run: no figure rather than the test run's.
    assert client.get(f"{base}/3", **auth).json()["figures"] is None


def _decided_policy(author: Any, name: str, versions: int) -> None:
    sample_set = make_sample_set(author, ["nice weather today"], name=f"{name} set")
    for number in range(1, versions + 1):
        version = make_version(author, name=name, number=number)
        for p_o in (0.5, 0.9):
            Job.objects.create(
                version=version,
                sample_set=sample_set,
                status=JobStatus.SUCCEEDED,
                text_a=version.text,
                text_b=version.twin_text,
                item_count=MIN_SAMPLE,
                stats={"n": MIN_SAMPLE, "p_o": p_o, "kappa": 0.1},
                created_by=author,
            )
    Policy.objects.filter(name=name).update(min_sample_size=MIN_SAMPLE)


def test_the_policy_list_reads_figures_in_queries_that_do_not_grow(
    author: Any, django_assert_max_num_queries: Any
) -> None:
    _decided_policy(author, "First", versions=1)
    with CaptureQueriesContext(connection) as one:
        assert summarize_policies()[0].figure is not None
    for name in ("Second", "Third", "Fourth"):
        _decided_policy(author, name, versions=4)
    with django_assert_max_num_queries(len(one.captured_queries)):
        rows = summarize_policies()
    figures = {row.policy.name: row.figure for row in rows}
    assert all(f is not None for f in figures.values())
    assert figures["Third"] is not None and figures["Third"].version_number == 4
