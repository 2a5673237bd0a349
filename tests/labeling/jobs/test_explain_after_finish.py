"""A job that finishes with mismatches starts explaining them by itself; others do not."""

from __future__ import annotations

from typing import Any

from labeling.models import ExplainRun, JobStatus
from tests.labeling.conftest import LABELED_TEXTS, make_sample_set, make_version
from tests.labeling.jobs.test_one_figure import run_job


def test_a_finished_job_with_mismatches_explains_them(
    author: Any,
    sent: list[dict[str, Any]],
    explain_sent: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    version = make_version(author, name="Explained", number=1)
    sample_set = make_sample_set(author, LABELED_TEXTS, name="Seven")

    job = run_job(version, sample_set, author, sent, django_capture_on_commit_callbacks)

    assert job.status == JobStatus.SUCCEEDED and job.stats["n"] == 7
    run = ExplainRun.objects.get(job=job)
    assert run.requested_by is None  # started by the studio, not a person
    assert run.items_total == job.review_tasks.count() == 2  # the two mismatches
    assert explain_sent and {r["run_id"] for r in explain_sent} == {run.pk}
    keys = {v["key"] for v in explain_sent[0]["variants"]}
    assert {"A", "B"} <= keys and any(k.startswith("A<B:") for k in keys)


def test_a_job_without_mismatches_or_not_finished_explains_nothing(
    author: Any,
    sent: list[dict[str, Any]],
    explain_sent: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    version = make_version(author, name="Agreeing", number=1)
    agreeing = make_sample_set(author, ["nice weather today"] * 5, name="Calm")
    partial_set = make_sample_set(author, LABELED_TEXTS, name="Seven")

    calm = run_job(version, agreeing, author, sent, django_capture_on_commit_callbacks)
    partial = run_job(
        version, partial_set, author, sent, django_capture_on_commit_callbacks,
        fail_first_chunk=True,
    )  # fmt: skip

    assert calm.status == JobStatus.SUCCEEDED and calm.stats["p_o"] == 1.0
    assert partial.status == JobStatus.PARTIAL
    assert not ExplainRun.objects.exists() and not explain_sent


def test_explain_chunks_in_the_broker_are_not_taken_for_job_chunks() -> None:
    import base64
    import json

    from labeling.jobs.broker import _chunk_id, job_chunk_id

    score = [{"job_id": 3, "chunk_id": 7, "side": "A"}]
    explain = [{"run_id": 2, "chunk_id": 7, "variants": [], "items": []}]
    assert job_chunk_id(score) == 7 and job_chunk_id(explain) is None

    def envelope(args: list[dict[str, Any]]) -> str:
        body = base64.b64encode(json.dumps([args, {}, {}]).encode()).decode()
        return json.dumps({"body": body, "properties": {"body_encoding": "base64"}})

    assert _chunk_id(envelope(score)) == 7 and _chunk_id(envelope(explain)) is None
    # The explain side reads the same envelopes through the same code, for its own kind.
    from labeling.explain.broker import explain_chunk_id

    assert _chunk_id(envelope(explain), explain_chunk_id) == 7
    assert _chunk_id(envelope(score), explain_chunk_id) is None
