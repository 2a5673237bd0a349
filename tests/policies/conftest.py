"""Small factories for the policies tests."""

from __future__ import annotations

from typing import Any

import pytest

from policies import services
from policies.models import Policy, Version


def make_policy(user: Any, name: str = "Harassment") -> Policy:
    return services.create_policy(name=name, description="Test policy.", created_by=user)


def make_version(policy: Policy, user: Any, text: str, twin_text: str = "", **kw: Any) -> Version:
    note = kw.pop("change_note", "" if not policy.versions.exists() else "A change.")
    return services.create_version(
        policy=policy, text=text, twin_text=twin_text, change_note=note, author=user, **kw
    )


def make_job(version: Version, user: Any, stats: dict[str, Any] | None = None) -> Any:
    """A labeling Job row: enough for 'this version has labels'. Tests may import labeling."""
    from labeling.models import Job, SampleSet

    sample_set = SampleSet.objects.create(name="Sample", created_by=user)
    return Job.objects.create(
        version=version,
        sample_set=sample_set,
        text_a=version.text,
        text_b=version.twin_text,
        created_by=user,
        stats=stats or {},
    )


def make_deciding_job(version: Version, user: Any, stats: dict[str, Any]) -> Any:
    """A job that decides its version's agreement (``labeling.jobs.evaluation``): succeeded,
    against the twin, at the policy's minimum sample on its only (so evaluation) sample set."""
    from django.utils import timezone

    from labeling.models import Job, JobStatus

    job = make_job(version, user, {"n": version.policy.min_sample_size, **stats})
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    return job


@pytest.fixture
def policy(author: Any) -> Policy:
    return make_policy(author)


@pytest.fixture
def version(policy: Policy, author: Any, policy_text: str, twin_text: str) -> Version:
    return make_version(policy, author, policy_text, twin_text)
