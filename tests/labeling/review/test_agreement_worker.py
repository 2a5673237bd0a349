"""Real Celery: votes committed in the review services queue the agreement refresh, and the
web-side worker stores the figures the page then shows."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.models import AgreementSnapshot, GoldChoice
from labeling.rater_agreement import rater_agreement
from labeling.review.team import from_json
from tests.labeling.conftest import retry_locked, wait_for
from tests.labeling.review.overlap_factories import as_units, decide_offered, task_ids
from tests.labeling.review.test_overlap import overlap_job

pytestmark = pytest.mark.celery_worker


def _current(job: Any, scope: Any) -> bool:
    row = AgreementSnapshot.objects.filter(policy_id=job.version.policy_id, job=scope).first()
    return row is not None and row.current and row.figures.get("figures", {}).get("units") == 4


@pytest.mark.django_db(transaction=True)
def test_the_worker_refreshes_the_figures_after_votes(
    celery_workers: Any, author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = overlap_job(author)  # four mismatches, overlap 2
    ids = task_ids(job)
    decide_offered(reviewer, job, dict(zip(ids, "1010", strict=True)))
    decide_offered(second_reviewer, job, dict(zip(ids, "1100", strict=True)))

    for scope in (job, None):
        wait_for(
            lambda scope=scope: _current(job, scope),
            timeout=60,
            what="the agreement refresh",
            workers=celery_workers,
        )
    row = retry_locked(lambda: AgreementSnapshot.objects.get(job=job))
    stored = from_json(row.figures).figures
    expected = rater_agreement(as_units(job), categories=len(GoldChoice.values))
    assert stored == expected
