"""Real Celery: the deciding job, its attribution run, the what-if run and the edited version's
first job all go through the broker, the model worker (the CPU baseline) and the bookkeeping
worker; the table against the formula by hand, and the new job against the prediction.

Where the bookkeeping worker is a subprocess (PostgreSQL), it finishes runs with the engine as
committed; until ``finish_run`` dispatches kind whatif there, the test writes the table where
the engine would (``finish_whatif``) once the run has finished."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.jobs import services as job_services
from labeling.models import ExplainRun, Job, Label
from labeling.whatif import services
from labeling.whatif.record import finish_whatif
from tests.labeling.conftest import retry_locked, wait_for
from tests.labeling.whatif.conftest import (
    CLAUSE,
    EDIT,
    POLICY_A,
    POLICY_B,
    TEXTS,
    formula_labels,
    make_whatif_version,
)

pytestmark = pytest.mark.celery_worker

OLD = "- Harsh criticism of a book, a film or a restaurant."


def _run_job(version: Any, sample_set: Any, author: Any, workers: Any) -> Job:
    job = retry_locked(
        lambda: job_services.start_job(
            version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=5
        )
    )
    wait_for(
        lambda: not Job.objects.get(pk=job.pk).is_active, timeout=180, what="the job",
        workers=workers,
    )  # fmt: skip
    return Job.objects.get(pk=job.pk)


def _runs_done(**filters: Any) -> bool:
    runs = ExplainRun.objects.filter(**filters)
    return runs.exists() and not runs.filter(status__in=("queued", "running")).exists()


@pytest.mark.django_db(transaction=True)
def test_real_workers_score_an_edit_and_the_new_version_shows_the_prediction(
    celery_workers: Any, author: Any, embedder: Any
) -> None:
    version, sample_set, items = make_whatif_version(author)
    job = _run_job(version, sample_set, author, celery_workers)
    assert job.status == "succeeded", (job.error, celery_workers.log_tail())
    # The job's finish starts its attribution run, which names the clause's mismatches.
    wait_for(lambda: _runs_done(job=job), timeout=180, what="attribution", workers=celery_workers)

    run = retry_locked(
        lambda: services.start_whatif(version, clause_key=CLAUSE, edit_a=EDIT, by=author)
    )
    wait_for(lambda: _runs_done(pk=run.pk), timeout=180, what="the what-if", workers=celery_workers)
    run.refresh_from_db()
    if "whole" not in run.summary:
        finish_whatif(run.pk)
        run.refresh_from_db()
    assert run.status == "succeeded", (run.error, celery_workers.log_tail())
    got = run.summary
    a = formula_labels(embedder, POLICY_A, TEXTS)
    b = formula_labels(embedder, POLICY_B, TEXTS)
    after = formula_labels(embedder, POLICY_A.replace(OLD, f"- {EDIT}"), TEXTS)
    n = len(TEXTS)
    assert got["scored"] == n and got["same_as_job"] is True and got["backend"] == "embedding"
    assert got["affected"]["n"] == sum(x != y for x, y in zip(a, b, strict=True)) == 3
    assert got["whole"]["before"]["agreement"] == pytest.approx(
        sum(x == y for x, y in zip(a, b, strict=True)) / n
    )
    assert got["predicted"]["agreement"] == pytest.approx(
        sum(x == y for x, y in zip(after, b, strict=True)) / n
    )

    made = retry_locked(lambda: services.make_version(run, by=author))
    new_job = _run_job(made, sample_set, author, celery_workers)
    assert new_job.status == "succeeded", (new_job.error, celery_workers.log_tail())
    labeled = set(Label.objects.filter(job=new_job).values_list("item_id", flat=True))
    assert labeled == {item.pk for item in items}
    assert new_job.stats["n"] == got["predicted"]["n"]
    assert new_job.stats["p_o"] == got["predicted"]["agreement"]
    wait_for(lambda: _runs_done(job=new_job) or not ExplainRun.objects.filter(job=new_job).exists(),
             timeout=180, what="the new job's attribution", workers=celery_workers)  # fmt: skip
