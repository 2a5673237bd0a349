"""Finalize freezes the deciding job: late results, retries and resumes never change it.

Also: Zentropi-shaped policies (one label, 30+ criteria) run as side A and as side B.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.jobs import results, services
from labeling.jobs.errors import JobError
from labeling.models import ChunkStatus, Job, JobChunk, JobStatus, Label, ReviewStatus, ReviewTask
from labeling.release.finalize import NotReady, finalize, finalize_readiness
from labeling.tasks import record_chunk
from policies.models import Policy, TwinOrigin, Version
from tests.labeling.conftest import LABELED_TEXTS as TEXTS
from tests.labeling.conftest import fake_result, make_sample_set
from tests.policies.real_policies import SINGLE_LABEL_POLICY, SINGLE_LABEL_TWIN


def real_version(author: Any, *, text: str, twin: str, name: str = "Regulated goods") -> Version:
    policy, _ = Policy.objects.get_or_create(
        name=name,
        # The fake scorer's 7-item run agrees on 5 items, kappa 0.46: a gate it passes.
        defaults={
            "created_by": author,
            "min_sample_size": 5,
            "agreement_threshold": 0.7,
            "min_kappa": 0.4,
        },
    )
    number = policy.versions.count() + 1
    return Version.objects.create(
        policy=policy,
        number=number,
        text=text,
        twin_text=twin,
        twin_origin=TwinOrigin.HAND,
        author=author,
        change_note="" if number == 1 else "swap",
    )


def run_job(version: Version, sample_set: Any, author: Any, sent: list, capture: Any) -> Job:
    with capture(execute=True):
        job = services.start_job(
            version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=3
        )
    for request in list(sent):
        record_chunk(fake_result(request))
    sent.clear()
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("swap", [False, True], ids=["policy-as-A", "policy-as-B"])
def test_a_zentropi_shaped_policy_runs_as_a_or_b(
    author: Any, sent: list, django_capture_on_commit_callbacks: Any, swap: bool
) -> None:
    text, twin = (
        (SINGLE_LABEL_TWIN, SINGLE_LABEL_POLICY)
        if swap
        else (SINGLE_LABEL_POLICY, SINGLE_LABEL_TWIN)
    )
    version = real_version(author, text=text, twin=twin)
    sample_set = make_sample_set(author, TEXTS)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.start_job(
            version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=3
        )
    assert {r["policy"] for r in sent if r["side"] == "A"} == {text}
    assert {r["policy"] for r in sent if r["side"] == "B"} == {twin}
    for request in list(sent):
        record_chunk(fake_result(request))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.stats["n"] == 7
    assert version.twin_warnings == []


@pytest.fixture
def decided(
    author: Any, admin_user: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> Job:
    """A finalized version and its frozen deciding job (7 items, 2 reviewed mismatches)."""
    version = real_version(author, text=SINGLE_LABEL_POLICY, twin=SINGLE_LABEL_TWIN)
    job = run_job(
        version, make_sample_set(author, TEXTS), author, sent, django_capture_on_commit_callbacks
    )
    assert job.status == JobStatus.SUCCEEDED
    job.review_tasks.update(status=ReviewStatus.RESOLVED, resolved_at=timezone.now())
    assert finalize_readiness(version).ok
    finalize(version=version, by=admin_user)
    job.refresh_from_db()
    return job


def snapshot(job: Job) -> tuple[Any, ...]:
    job.refresh_from_db()
    labels = list(Label.objects.filter(job=job).order_by("pk").values_list("label", "p1", "error"))
    tasks = list(ReviewTask.objects.filter(job=job).order_by("pk").values_list("item_id", "status"))
    return (
        job.status,
        job.stats,
        job.done_a,
        job.done_b,
        job.errors_a,
        job.failed_chunks,
        labels,
        tasks,
    )


def test_finalize_freezes_the_deciding_job_with_its_evidence(decided: Job) -> None:
    assert decided.frozen_at is not None
    version = decided.version
    version.refresh_from_db()
    assert version.is_finalized
    evidence = version.finalize_evidence
    assert evidence["job_id"] == decided.pk and evidence["reviewed_mismatches"] == 2
    assert evidence["agreement"]["n"] == 7 and evidence["agreement"]["p_o"] == pytest.approx(5 / 7)
    assert evidence["backend"] == "fake" and evidence["model_id"] == "tests/fake"
    assert len(evidence["items_sha256"]) == 64 and evidence["override_reason"] == ""


def test_a_late_result_after_finalize_is_ignored(decided: Job, sent: list) -> None:
    before = snapshot(decided)
    chunk = JobChunk.objects.filter(job=decided).order_by("pk").first()
    assert chunk is not None
    # A chunk marked failed on the frozen job, then a late success with other labels arrives:
    # unfrozen, it would reopen the job and rewrite its labels and review tasks.
    JobChunk.objects.filter(pk=chunk.pk).update(status=ChunkStatus.FAILED)
    before = snapshot(decided)
    request = {
        "contract": 1, "job_id": decided.pk, "chunk_id": chunk.pk, "side": chunk.side,
        "policy": decided.text_a, "attempt": 2,
        "items": [{"item_id": i, "text": "another insult"} for i in chunk.item_ids],
    }  # fmt: skip
    assert record_chunk(fake_result(request)) == "ignored"
    assert snapshot(decided) == before
    assert JobChunk.objects.get(pk=chunk.pk).status == ChunkStatus.FAILED


def test_retry_on_a_frozen_job_is_refused_with_a_message(decided: Job, sent: list) -> None:
    JobChunk.objects.filter(job=decided).update(status=ChunkStatus.FAILED)
    before = snapshot(decided)
    with pytest.raises(JobError, match="is frozen"):
        services.retry_failed_chunks(decided)
    assert snapshot(decided) == before and sent == []


def test_resume_on_a_frozen_job_sends_nothing(decided: Job, sent: list) -> None:
    Job.objects.filter(pk=decided.pk).update(status=JobStatus.RUNNING)  # as if reopened
    JobChunk.objects.filter(job=decided).update(status=ChunkStatus.QUEUED, sent_at=None)
    decided.refresh_from_db()
    assert services.resume_job_now(decided) == 0
    assert services.resume_job(decided, stale_after=timezone.timedelta(0)) == 0
    assert results.maybe_finish_job(decided.pk) is False
    assert sent == []


def test_retry_button_says_the_job_is_frozen(decided: Job, author: Any) -> None:
    JobChunk.objects.filter(job=decided).update(status=ChunkStatus.FAILED)
    client = Client()
    client.force_login(author)
    response = client.post(
        reverse("labeling:job_retry", args=[decided.pk]), {"confirm": "True"}, follow=True
    )
    assert "is frozen" in response.content.decode()
    page = client.get(reverse("labeling:job_detail", args=[decided.pk])).content.decode()
    assert "decided the finalizing of" in page


def test_weak_labels_need_an_admin_override_reason(
    author: Any, admin_user: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    version = real_version(author, text=SINGLE_LABEL_POLICY, twin=SINGLE_LABEL_TWIN)
    job = run_job(
        version, make_sample_set(author, TEXTS), author, sent, django_capture_on_commit_callbacks
    )
    job.review_tasks.update(status=ReviewStatus.RESOLVED)
    Job.objects.filter(pk=job.pk).update(backend="embedding", weak_backend=True)

    readiness = finalize_readiness(version)
    assert not readiness.ok and readiness.overridable and readiness.weak
    with pytest.raises(NotReady) as caught:
        finalize(version=version, by=admin_user)
    assert caught.value.readiness.missing[-1] == "No override reason was given."
    assert "CPU baseline" in caught.value.readiness.missing[0]

    finalize(version=version, by=admin_user, override_reason="  Pilot: CoPE GPU arrives in May. ")
    version.refresh_from_db()
    assert version.is_finalized
    assert version.finalize_override == "Pilot: CoPE GPU arrives in May."
    assert version.finalize_evidence["override_reason"] == "Pilot: CoPE GPU arrives in May."
    assert version.finalize_evidence["weak_backend"] is True


def test_override_does_not_lift_other_conditions(
    author: Any, admin_user: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    version = real_version(author, text=SINGLE_LABEL_POLICY, twin=SINGLE_LABEL_TWIN)
    job = run_job(
        version, make_sample_set(author, TEXTS), author, sent, django_capture_on_commit_callbacks
    )
    Job.objects.filter(pk=job.pk).update(backend="embedding")  # and 2 mismatches unreviewed
    with pytest.raises(NotReady) as caught:
        finalize(version=version, by=admin_user, override_reason="because")
    assert any("not reviewed yet" in m for m in caught.value.readiness.missing)
    version.refresh_from_db()
    job.refresh_from_db()
    assert not version.is_finalized and job.frozen_at is None


def test_policy_over_the_token_budget_is_refused(
    author: Any, admin_user: Any, sent: list, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    version = real_version(author, text=SINGLE_LABEL_POLICY, twin=SINGLE_LABEL_TWIN)
    job = run_job(
        version, make_sample_set(author, TEXTS), author, sent, django_capture_on_commit_callbacks
    )
    job.review_tasks.update(status=ReviewStatus.RESOLVED)
    settings.COPE_TOKENIZER = ""
    settings.COPE_CONTEXT_LIMIT = 500  # the policy is ~1,000 tokens with the template
    missing = finalize_readiness(version).missing
    assert missing[0].startswith("The policy text uses ≈")
    assert missing[1].startswith("The twin uses ≈")
    with pytest.raises(NotReady):
        finalize(version=version, by=admin_user)


def test_job_page_repeats_the_structural_warnings_of_its_two_texts(
    author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    twin = SINGLE_LABEL_TWIN.replace("(RG)", "(RX)")
    version = real_version(author, text=SINGLE_LABEL_POLICY, twin=twin)
    job = run_job(
        version, make_sample_set(author, TEXTS), author, sent, django_capture_on_commit_callbacks
    )
    client = Client()
    client.force_login(author)
    page = client.get(reverse("labeling:job_detail", args=[job.pk])).content.decode()
    assert "differ in structure" in page
    assert "Label codes differ (missing from the twin: RG; only in the twin: RX)." in page
    assert "% of words changed" in page
