"""The evaluation set and each version's deciding job: what may move the chart and finalize."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from labeling.jobs.evaluation import deciding_job, deciding_jobs, evaluation_choice, evaluation_set
from labeling.models import CompareKind, Job, JobStatus, PolicyEvaluation, SampleSet
from tests.labeling.review.test_review import make_job, make_policy, make_version


def _job(version: Any, author: Any, sample_set: SampleSet, n: int, **kw: Any) -> Job:
    job = make_job(
        author=author, version=version, mismatches=[], sample_set=sample_set, stats={"n": n}
    )
    if kw:
        Job.objects.filter(pk=job.pk).update(**kw)
        job.refresh_from_db()
    return job


def test_no_evaluation_set_until_a_job_reaches_the_minimum_sample(author: Any) -> None:
    policy = make_policy(author, min_sample_size=50)
    version = make_version(policy, author)
    small = SampleSet.objects.create(name="small", created_by=author)
    _job(version, author, small, n=1)

    assert evaluation_set(policy) is None
    assert deciding_job(version) is None
    assert "No evaluation set yet" in evaluation_choice(policy).explanation


def test_first_set_at_the_minimum_sample_becomes_the_evaluation_set(author: Any) -> None:
    policy = make_policy(author, min_sample_size=50)
    v1 = make_version(policy, author)
    first, other = (SampleSet.objects.create(name=n, created_by=author) for n in ("ev", "other"))
    job = _job(v1, author, first, n=60, finished_at=timezone.now() - timedelta(hours=1))
    _job(v1, author, other, n=80)

    assert evaluation_set(policy) == first
    assert not evaluation_choice(policy).chosen
    # The later job on another set does not decide.
    assert deciding_job(v1) == job


def test_small_runs_other_comparisons_and_unfinished_jobs_never_decide(author: Any) -> None:
    policy = make_policy(author, min_sample_size=50)
    v1 = make_version(policy, author)
    ev = SampleSet.objects.create(name="ev", created_by=author)
    decider = _job(v1, author, ev, n=60, finished_at=timezone.now() - timedelta(hours=2))
    _job(v1, author, ev, n=1, finished_at=timezone.now())  # a 1-item test run
    _job(v1, author, ev, n=90, compare_kind=CompareKind.PASTED, finished_at=timezone.now())
    _job(v1, author, ev, n=90, status=JobStatus.FAILED, finished_at=timezone.now())
    _job(v1, author, ev, n=90, status=JobStatus.CANCELLED, finished_at=timezone.now())

    assert deciding_job(v1) == decider
    assert deciding_jobs(policy, [v1]) == {v1.pk: decider}


def test_a_chosen_evaluation_set_wins_over_the_automatic_rule(author: Any) -> None:
    policy = make_policy(author, min_sample_size=50)
    v1 = make_version(policy, author)
    auto, chosen = (SampleSet.objects.create(name=n, created_by=author) for n in ("a", "c"))
    _job(v1, author, auto, n=60, finished_at=timezone.now() - timedelta(hours=1))
    PolicyEvaluation.objects.create(policy=policy, sample_set=chosen, chosen_by=author)

    assert evaluation_set(policy) == chosen
    assert evaluation_choice(policy).chosen
    assert deciding_job(v1) is None
    later = _job(v1, author, chosen, n=50)
    assert deciding_job(v1) == later


def test_latest_qualifying_job_decides(author: Any) -> None:
    policy = make_policy(author, min_sample_size=10)
    v1, v2 = make_version(policy, author), make_version(policy, author)
    ev = SampleSet.objects.create(name="ev", created_by=author)
    now = timezone.now()
    _job(v1, author, ev, n=10, finished_at=now - timedelta(hours=3))
    newer = _job(v1, author, ev, n=10, finished_at=now - timedelta(hours=1))
    v2_job = _job(v2, author, ev, n=10, finished_at=now)

    assert deciding_jobs(policy, [v1, v2]) == {v1.pk: newer, v2.pk: v2_job}
