"""Binocular jobs: start, record results (idempotently), finish, cancel, resume, retry; pages."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.urls import reverse

from labeling.jobs import broker, evaluation, results, services, sql, stats
from labeling.jobs.errors import JobError
from labeling.models import ChunkStatus, Job, JobChunk, JobStatus, Label, ReviewTask
from labeling.tasks import record_chunk
from tests.conftest import PASSWORD
from tests.labeling.conftest import (
    TEXTS,
    FakeBroker,
    fake_result,
    make_sample_set,
    make_version,
)

CONFIRM = {"confirm": "True"}  # what the buttons' JobActionForm posts


@pytest.fixture
def version(author: Any) -> Any:
    return make_version(author)


@pytest.fixture
def sample_set(author: Any) -> Any:
    return make_sample_set(author, TEXTS)


def start(
    version: Any,
    sample_set: Any,
    author: Any,
    django_capture_on_commit_callbacks: Any,
    **kwargs: Any,
) -> Job:
    with django_capture_on_commit_callbacks(execute=True):
        job = services.start_job(
            version=version,
            sample_set=sample_set,
            sample_size=kwargs.pop("sample_size", None),
            by=author,
            chunk_size=kwargs.pop("chunk_size", 3),
            **kwargs,
        )
    job.refresh_from_db()  # prepared by the on-commit task
    return job


def test_start_job_freezes_texts_and_sends_one_request_per_chunk_and_side(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    assert job.status == JobStatus.QUEUED and job.item_count == 8 and job.chunk_count == 3
    assert job.text_a == version.text and job.text_b == version.twin_text
    assert JobChunk.objects.filter(job=job).count() == 6
    assert len(sent) == 6
    assert {(r["side"], len(r["items"])) for r in sent} == {("A", 3), ("B", 3), ("A", 2), ("B", 2)}
    assert all(r["policy"] == (job.text_a if r["side"] == "A" else job.text_b) for r in sent)
    assert not JobChunk.objects.filter(job=job, sent_at__isnull=True).exists()


def test_starting_a_job_locks_its_version_alone(
    version: Any, sample_set: Any, author: Any, sent: list
) -> None:
    """The version's row is locked while its texts are read; ``Version``'s default ordering
    would join its policy, and ``FOR UPDATE`` lock the policy's row too."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        services.start_job(version=version, sample_set=sample_set, sample_size=None, by=author)
    locks = [q["sql"] for q in queries if "FOR UPDATE" in q["sql"]]
    if connection.features.has_select_for_update:
        assert any('"policies_version"' in sql for sql in locks), locks
    assert not [sql for sql in locks if '"policies_policy"' in sql]


def test_nothing_is_sent_if_the_transaction_rolls_back(
    version: Any, sample_set: Any, author: Any, sent: list
) -> None:
    services.start_job(version=version, sample_set=sample_set, sample_size=None, by=author)
    assert sent == []  # on_commit: the test transaction never commits


def test_job_needs_a_twin(author: Any, sample_set: Any) -> None:
    version = make_version(author, twin="")
    with pytest.raises(JobError, match="no twin"):
        services.start_job(version=version, sample_set=sample_set, sample_size=None, by=author)


def test_random_sample_is_seeded_and_in_file_order(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    a = start(
        version, sample_set, author, django_capture_on_commit_callbacks, sample_size=4, seed=7
    )
    b = start(
        version, sample_set, author, django_capture_on_commit_callbacks, sample_size=4, seed=7
    )
    ids = lambda job: [i for c in job.chunks.filter(side="A").order_by("index") for i in c.item_ids]  # noqa: E731
    assert a.item_count == 4 and ids(a) == ids(b) and ids(a) == sorted(ids(a))
    assert a.sample_seed == 7 and a.sample_size == 4


def run_all(sent: list) -> None:
    for request in list(sent):
        record_chunk(fake_result(request))


def test_results_finish_the_job_with_stats_and_review_tasks_for_mismatches(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    run_all(sent)
    job.refresh_from_db()
    # The LONG item failed on both sides: partial, never "succeeded", and said why.
    assert job.status == JobStatus.PARTIAL and job.finished_at and job.started_at
    assert "1 items failed under A and 1 under B" in job.error
    assert job.stats["lost"]["A"] == {
        "count": 1,
        "reasons": [["over the token budget", 1]],
        "other": 0,
    }
    assert job.stats["labeled"] == {"A": 7, "B": 7}
    assert evaluation.latest_finished_job(version) is None
    assert (job.done_a, job.done_b, job.errors_a, job.errors_b) == (7, 7, 1, 1)
    assert job.backend == "fake" and job.model_id == "tests/fake" and not job.weak_backend
    assert job.model_seconds == pytest.approx(3.0) and job.bookkeeping_seconds > 0
    assert Label.objects.filter(job=job).count() == 16
    stats = job.stats
    # 7 labeled on both sides: 2 insults (1/1), 2 borderline (1/0), 3 clean (0/0).
    assert stats["n"] == 7 and stats["agree"] == 5
    assert stats["confusion"] == {"a1b1": 2, "a1b0": 2, "a0b1": 0, "a0b0": 3}
    assert stats["excluded"] == {"error under both A and B": 1}
    tasks = ReviewTask.objects.filter(job=job)
    assert tasks.count() == 2
    task = tasks.first()
    assert (task.label_a, task.label_b, task.p1_a, task.p1_b) == (1, 0, 0.6, 0.4)
    assert task.policy_id == version.policy_id


@pytest.mark.parametrize("returning", [True, False])
def test_chunks_flow_through_a_small_window_with_or_without_update_returning(
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    returning: bool,
) -> None:
    """Each result sends the next chunk (one in flight), by ``UPDATE … RETURNING`` or, on a
    database without it (SQLite before 3.35), by picking then marking: the same job either way."""
    monkeypatch.setattr(sql, "update_returning", lambda: returning)
    settings.COPE_CHUNKS_IN_FLIGHT = 1
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    assert len(sent) == 1
    done = 0
    while done < len(sent):
        with django_capture_on_commit_callbacks(execute=True):
            record_chunk(fake_result(sent[done]))
        done += 1
    job.refresh_from_db()
    assert done == job.chunk_count * 2 and len({r["chunk_id"] for r in sent}) == done
    assert all(r["attempt"] == 1 for r in sent)
    assert job.status == JobStatus.PARTIAL and job.stats["labeled"] == {"A": 7, "B": 7}
    assert Label.objects.filter(job=job).count() == 16
    assert not JobChunk.objects.filter(job=job, sent_at__isnull=True).exists()


def test_a_redelivered_result_changes_nothing(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    first = fake_result(sent[0])
    assert record_chunk(first) == "recorded"
    job.refresh_from_db()
    before = (job.done_a, job.done_b, job.errors_a, job.model_seconds)
    labels = list(Label.objects.values_list("pk", "label", "p1"))
    assert record_chunk(first) == "duplicate"
    job.refresh_from_db()
    assert (job.done_a, job.done_b, job.errors_a, job.model_seconds) == before
    assert list(Label.objects.values_list("pk", "label", "p1")) == labels
    run_all(sent)
    run_all(sent)  # everything twice more
    job.refresh_from_db()
    assert job.done_a == 7 and Label.objects.filter(job=job).count() == 16
    assert ReviewTask.objects.filter(job=job).count() == 2


def test_a_worker_cannot_write_labels_outside_its_chunk(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    result = fake_result(sent[0])
    result["outcomes"].append({"item_id": 999999, "label": 1, "p1": 0.9, "error": ""})
    result["outcomes"].pop(0)
    record_chunk(result)
    chunk = JobChunk.objects.get(pk=sent[0]["chunk_id"])
    labels = Label.objects.filter(job=job)
    assert set(labels.values_list("item_id", flat=True)) == set(chunk.item_ids)
    assert labels.get(item_id=chunk.item_ids[0]).error == "no result for this item from the worker"


def test_failed_chunks_make_the_job_partial_and_retry_runs_exactly_the_failed_items(
    author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    version = make_version(author)
    clean = make_sample_set(author, [t for t in TEXTS if "LONG" not in t], name="Clean")
    job = start(version, clean, author, django_capture_on_commit_callbacks)
    failing = sent[0]  # side A, items 1-3
    assert record_chunk(fake_result(failing, error="CUDA out of memory")) == "failed"
    for request in sent[1:]:
        record_chunk(fake_result(request))
    job.refresh_from_db()
    assert job.status == JobStatus.PARTIAL and job.failed_chunks == 1
    assert (job.done_a, job.done_b, job.errors_a, job.errors_b) == (4, 7, 3, 0)
    assert job.stats["lost"]["A"]["reasons"] == [["CUDA out of memory", 3]]
    assert job.stats["lost"]["B"]["count"] == 0
    assert evaluation.latest_finished_job(version) is None  # a partial job never decides
    chunk = JobChunk.objects.get(pk=failing["chunk_id"])
    assert chunk.status == ChunkStatus.FAILED and chunk.error == "CUDA out of memory"

    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.retry_failed_chunks(job) == 3
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.failed_chunks == 0 and job.stats == {}
    assert [(r["side"], sorted(i["item_id"] for i in r["items"])) for r in sent] == [
        ("A", sorted(failing_item["item_id"] for failing_item in failing["items"]))
    ]
    assert JobChunk.objects.get(pk=failing["chunk_id"]).status == ChunkStatus.RETRIED
    # A late copy of the old failed chunk changes nothing now.
    assert record_chunk(fake_result(failing)) == "duplicate"
    record_chunk(fake_result(sent[0]))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and not job.error
    assert (job.done_a, job.done_b, job.errors_a, job.errors_b) == (7, 7, 0, 0)
    assert job.stats["n"] == 7 and evaluation.latest_finished_job(version) == job


def test_an_item_that_failed_alone_is_retried_alone(
    author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    version = make_version(author)
    clean = make_sample_set(author, [t for t in TEXTS if "LONG" not in t], name="Clean")
    job = start(version, clean, author, django_capture_on_commit_callbacks)
    refused = fake_result(sent[1])  # side B, items 1-3: the server refused one item
    refused["outcomes"][1].update(label=None, p1=None, error="The model server refused it")
    record_chunk(refused)
    for request in sent[:1] + sent[2:]:
        record_chunk(fake_result(request))
    job.refresh_from_db()
    assert job.status == JobStatus.PARTIAL
    assert (job.done_a, job.done_b, job.errors_a, job.errors_b) == (7, 6, 0, 1)
    assert job.stats["lost"]["B"]["reasons"] == [["The model server refused it", 1]]
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.retry_failed_chunks(job) == 1
    assert [(r["side"], [i["item_id"] for i in r["items"]]) for r in sent] == [
        ("B", [refused["outcomes"][1]["item_id"]])
    ]
    record_chunk(fake_result(sent[0]))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.errors_b == 0 and job.done_b == 7


def test_every_chunk_failing_fails_the_job(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    for request in sent:
        record_chunk(fake_result(request, error="model did not load"))
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.failed_chunks == 6
    assert "No item got a label" in job.error
    assert job.stats["n"] == 0 and job.stats["lost"]["A"]["count"] == 8


def test_cancelled_job_ignores_results(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    record_chunk(fake_result(sent[0]))
    assert services.cancel_job(job) is True
    assert services.cancel_job(job) is False
    assert record_chunk(fake_result(sent[1])) == "ignored"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.done_a + job.done_b == 3
    assert services.resume_job(job, stale_after=timedelta(0)) == 0


def test_resume_resends_only_chunks_no_queue_and_no_worker_has(
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    broker: FakeBroker,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    record_chunk(fake_result(sent[0]))
    chunks = {c.pk: c for c in JobChunk.objects.filter(job=job, status=ChunkStatus.QUEUED)}
    sent.clear()
    assert services.resume_job(job) == 0  # sent just now: within the grace
    ids = sorted(chunks)
    broker.queued = {ids[0], ids[1]}  # waiting in the gpu queue (or its result in default)
    broker.held = {ids[2]}  # a model worker has it
    with django_capture_on_commit_callbacks(execute=True):
        assert services.resume_job(job, stale_after=timedelta(0)) == 2
    assert sorted(r["chunk_id"] for r in sent) == ids[3:]
    assert {r["attempt"] for r in sent} == {2}
    assert services.resume_stalled_jobs(stale_after=timedelta(0)) == {job.pk: 2}


def test_no_model_worker_means_no_copies_and_no_attempts_used(
    settings: Any,
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    broker: FakeBroker,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.COPE_MAX_CHUNK_ATTEMPTS = 1
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    chunk_ids = [r["chunk_id"] for r in sent]
    sent.clear()
    broker.model_workers = 0
    broker.queued = set(chunk_ids)  # waiting in the queue for a worker: nothing to do
    for _ in range(3):
        assert services.resume_job(job, stale_after=timedelta(0)) == 0
    assert sent == []
    broker.queued = set()  # the broker restarted empty, still no worker
    with django_capture_on_commit_callbacks(execute=True):
        assert services.resume_job(job, stale_after=timedelta(0)) == 6
    assert len(sent) == 6 and {r["attempt"] for r in sent} == {1}  # not counted, not failed
    assert not JobChunk.objects.filter(job=job, status=ChunkStatus.FAILED).exists()


def test_malformed_result_is_rejected_without_raising() -> None:
    assert record_chunk({"contract": 99}) == "rejected"
    assert record_chunk({"job_id": 1}) == "rejected"


def test_results_for_deleted_jobs_are_ignored(db: Any) -> None:
    result = fake_result(
        {"job_id": 12345, "chunk_id": 1, "side": "A", "policy": "p", "items": [], "contract": 1}
    )
    assert record_chunk(result) == "ignored"


# Pages --------------------------------------------------------------------------------------


@pytest.fixture
def finished_job(
    version: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> Job:
    clean = make_sample_set(author, [t for t in TEXTS if "LONG" not in t], name="Clean")
    job = start(version, clean, author, django_capture_on_commit_callbacks)
    run_all(sent)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    return job


def test_job_page_shows_agreement_confusion_and_chart(
    client: Any, author: Any, finished_job: Job
) -> None:
    # The chart draws deciding jobs only (at least the minimum sample labeled).
    type(finished_job.version.policy).objects.filter(pk=finished_job.version.policy_id).update(
        min_sample_size=7
    )
    client.login(username=author.username, password=PASSWORD)
    page = client.get(reverse("labeling:job_detail", args=[finished_job.pk])).content.decode()
    assert "71.4%" in page  # 5 of 7
    assert "Cohen&#x27;s kappa" in page or "Cohen's kappa" in page
    assert 'class="confusion"' in page and "<svg" in page and "stroke-dasharray" in page
    assert "every item got a label under both wordings" in page
    assert "hx-trigger" not in page  # finished: no polling


def test_active_job_polls_a_partial(
    client: Any,
    author: Any,
    version: Any,
    sample_set: Any,
    sent: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    client.login(username=author.username, password=PASSWORD)
    url = reverse("labeling:job_detail", args=[job.pk])
    page = client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in page and "<html" in page
    fragment = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="job-status"') and "<html" not in fragment
    assert "Cancel job" in fragment


def test_weak_backend_is_said_plainly(client: Any, author: Any, finished_job: Job) -> None:
    Job.objects.filter(pk=finished_job.pk).update(backend="embedding", weak_backend=True)
    client.login(username=author.username, password=PASSWORD)
    page = client.get(reverse("labeling:job_detail", args=[finished_job.pk])).content.decode()
    assert "labels from the embedding baseline, a weak classifier, not CoPE" in page
    panel = client.get(reverse("labeling:policy_panel", args=[finished_job.version.policy_id]))
    assert "a weak classifier, not CoPE" in panel.content.decode()


def test_panels_render_as_fragment_or_page(client: Any, reviewer: Any, finished_job: Job) -> None:
    client.login(username=reviewer.username, password=PASSWORD)
    version = finished_job.version
    # The chart draws deciding jobs only (at least the minimum sample labeled).
    type(version.policy).objects.filter(pk=version.policy_id).update(min_sample_size=7)
    for url in (
        reverse("labeling:version_panel", args=[version.pk]),
        reverse("labeling:policy_panel", args=[version.policy_id]),
    ):
        full = client.get(url).content.decode()
        assert "<html" in full and f"Job {finished_job.pk}" in full
        fragment = client.get(url, headers={"HX-Request": "true"}).content.decode()
        assert "<html" not in fragment and f"Job {finished_job.pk}" in fragment
    panel = client.get(reverse("labeling:version_panel", args=[version.pk])).content.decode()
    assert "Run binocular job" not in panel  # reviewers look, authors run
    story = client.get(reverse("labeling:policy_panel", args=[version.policy_id])).content.decode()
    assert "<svg" in story and ">2</a>" in story  # two open reviews for v1


def test_run_job_from_the_version_panel(
    client: Any,
    author: Any,
    version: Any,
    sample_set: Any,
    sent: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.login(username=author.username, password=PASSWORD)
    panel = client.get(reverse("labeling:version_panel", args=[version.pk])).content.decode()
    assert "Run binocular job" in panel
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("labeling:job_start", args=[version.pk]),
            {"sample_set": sample_set.pk, "sample_size": 5, "seed": 1},
            headers={"HX-Request": "true"},
        )
    job = Job.objects.get()
    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("labeling:job_detail", args=[job.pk])
    assert job.item_count == 5 and len(sent) == 2  # COPE_CHUNK_SIZE 128: one chunk per side


def test_job_permissions(client: Any, reviewer: Any, outsider: Any, finished_job: Job) -> None:
    url = reverse("labeling:job_detail", args=[finished_job.pk])
    client.login(username=reviewer.username, password=PASSWORD)
    assert client.get(url).status_code == 200
    assert client.post(reverse("labeling:job_cancel", args=[finished_job.pk])).status_code == 403
    start_url = reverse("labeling:job_start", args=[finished_job.version_id])
    assert client.post(start_url, {"sample_set": finished_job.sample_set_id}).status_code == 403
    client.login(username=outsider.username, password=PASSWORD)
    assert client.get(url).status_code == 403
    assert client.get(reverse("labeling:policy_panel", args=[1])).status_code == 403


def test_cancel_retry_resume_buttons(
    client: Any,
    author: Any,
    version: Any,
    sample_set: Any,
    sent: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    client.login(username=author.username, password=PASSWORD)
    JobChunk.objects.filter(job=job).update(sent_at=job.created_at - timedelta(hours=1))
    page = client.get(reverse("labeling:job_detail", args=[job.pk])).content.decode()
    assert "Resume stalled chunks" in page
    sent.clear()
    assert 'name="confirm"' in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("labeling:job_resume", args=[job.pk]), CONFIRM)
    assert len(sent) == 6
    response = client.post(reverse("labeling:job_cancel", args=[job.pk]), CONFIRM)
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    response = client.post(reverse("labeling:job_retry", args=[job.pk]), CONFIRM, follow=True)
    assert "cannot be retried" in response.content.decode()


def test_job_actions_need_their_form(
    client: Any,
    author: Any,
    version: Any,
    sample_set: Any,
    sent: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    client.login(username=author.username, password=PASSWORD)
    for name in ("job_cancel", "job_resume", "job_retry"):
        assert client.post(reverse(f"labeling:{name}", args=[job.pk])).status_code == 400
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    response = client.post(
        reverse("labeling:job_cancel", args=[job.pk]), CONFIRM, headers={"HX-Request": "true"}
    )
    assert response.status_code == 204 and response["HX-Redirect"].endswith(f"/{job.pk}/")


# Racing copies of a chunk, lost chunks, poison chunks -------------------------------------


def counters(job: Job) -> tuple[int, int, int, int, int]:
    job.refresh_from_db()
    return job.done_a, job.done_b, job.errors_a, job.errors_b, job.failed_chunks


def test_a_success_after_a_failure_of_the_same_chunk_wins(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    first = sent[0]  # side A, items 1-3: no LONG item, all three label
    assert record_chunk(fake_result(first, error="worker lost")) == "failed"
    assert counters(job) == (0, 0, 3, 0, 1)
    assert record_chunk(fake_result(first)) == "recorded"
    assert counters(job) == (3, 0, 0, 0, 0)
    chunk = JobChunk.objects.get(pk=first["chunk_id"])
    assert chunk.status == ChunkStatus.DONE and chunk.error == ""
    assert not Label.objects.filter(job=job, label__isnull=True).exists()
    assert record_chunk(fake_result(first)) == "duplicate"  # a redelivered success: nothing
    assert counters(job) == (3, 0, 0, 0, 0)
    run_all(sent[1:])
    assert counters(job) == (7, 7, 1, 1, 0) and job.status == JobStatus.PARTIAL


def test_a_failure_never_replaces_a_success(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    record_chunk(fake_result(sent[0]))
    labels = list(Label.objects.values_list("pk", "label", "p1", "error"))
    assert record_chunk(fake_result(sent[0], error="CUDA error")) == "duplicate"
    assert counters(job) == (3, 0, 0, 0, 0)
    assert list(Label.objects.values_list("pk", "label", "p1", "error")) == labels
    assert JobChunk.objects.get(pk=sent[0]["chunk_id"]).status == ChunkStatus.DONE


def test_a_late_success_reopens_a_job_that_finished_with_the_failure(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    run_all(sent[1:])
    record_chunk(fake_result(sent[0], error="worker lost"))
    job.refresh_from_db()
    assert job.status == JobStatus.PARTIAL and job.failed_chunks == 1 and job.stats["n"] == 4
    assert ReviewTask.objects.filter(job=job).count() == 1
    assert record_chunk(fake_result(sent[0])) == "recorded"
    job.refresh_from_db()
    assert job.status == JobStatus.PARTIAL and job.finished_at  # the LONG item still failed
    assert counters(job) == (7, 7, 1, 1, 0) and job.stats["n"] == 7
    assert ReviewTask.objects.filter(job=job).count() == 2  # the chunk's mismatch too


def test_retry_after_finish_reopens_under_the_job_lock(
    version: Any, sample_set: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    for request in sent[:3]:
        record_chunk(fake_result(request, error="boom"))
    run_all(sent[3:])
    assert counters(job)[4] == 3
    sent.clear()
    # Stale status on the instance: retry reads the row's, under its lock.
    job.status = JobStatus.RUNNING
    failed_items = Label.objects.filter(job=job, label__isnull=True).count()
    assert services.retry_failed_chunks(job) == failed_items
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.finished_at is None and job.failed_chunks == 0
    assert job.errors_a == job.errors_b == 0
    assert JobChunk.objects.filter(job=job, status=ChunkStatus.RETRIED).count() == 3
    retried = JobChunk.objects.filter(job=job, status=ChunkStatus.QUEUED)
    assert sum(len(c.item_ids) for c in retried) == failed_items


@pytest.mark.django_db(transaction=True)
def test_finish_waits_for_a_retry_that_holds_the_job(
    author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    """The race: finish checks "nothing queued", a retry re-queues a failed chunk, finish then
    marks the job succeeded with a queued chunk whose result would be ignored."""
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("row locks and concurrent connections need PostgreSQL")
    version = make_version(author)
    job = services.start_job(
        version=version,
        sample_set=make_sample_set(author, TEXTS),
        sample_size=None,
        by=author,
        chunk_size=3,
    )
    failing, last = sent[0], sent[-1]
    record_chunk(fake_result(failing, error="boom"))
    for request in sent[1:-1]:
        record_chunk(fake_result(request))
    # The last result is written, but its finish has not run yet.
    JobChunk.objects.filter(pk=last["chunk_id"]).update(status=ChunkStatus.DONE)
    retried = threading.Event()

    def retry() -> None:
        from django.db import connection as thread_connection

        try:
            with transaction.atomic():
                services.retry_failed_chunks(Job.objects.get(pk=job.pk))
                retried.set()
                time.sleep(0.5)  # the finish below runs now, against the retry's open lock
        finally:
            retried.set()
            thread_connection.close()

    thread = threading.Thread(target=retry)
    thread.start()
    assert retried.wait(10)
    finished = results.maybe_finish_job(job.pk)
    thread.join(10)
    job.refresh_from_db()
    assert not finished and job.status == JobStatus.RUNNING
    assert JobChunk.objects.get(pk=failing["chunk_id"]).status == ChunkStatus.RETRIED
    assert JobChunk.objects.filter(job=job, status=ChunkStatus.QUEUED).exists()


def test_requests_carry_their_attempt(
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    broker: FakeBroker,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    assert {r["attempt"] for r in sent} == {1}
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.resume_job(job, stale_after=timedelta(0)) == 6
    assert {r["attempt"] for r in sent} == {2}


def test_a_chunk_lost_too_often_is_failed_not_resent(
    settings: Any,
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    broker: FakeBroker,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.COPE_MAX_CHUNK_ATTEMPTS = 2
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    run_all(sent[1:])  # every chunk but the first answers
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.resume_job(job, stale_after=timedelta(0)) == 1  # the second send
    assert [r["attempt"] for r in sent] == [2]
    sent.clear()
    assert services.resume_job_now(job) == 0  # sent just now
    with django_capture_on_commit_callbacks(execute=True):
        assert services.resume_job(job, stale_after=timedelta(0)) == 0
    assert sent == []
    chunk = JobChunk.objects.get(pk=sent_chunk_id(job))
    assert chunk.status == ChunkStatus.FAILED and "COPE_MAX_CHUNK_ATTEMPTS=2" in chunk.error
    job.refresh_from_db()
    # It was the last queued chunk: the job is finished, its 3 items counted as errors (+ LONG).
    assert job.status == JobStatus.PARTIAL and counters(job) == (4, 7, 3 + 1, 1, 1)
    assert Label.objects.filter(job=job, item_id__in=chunk.item_ids, side="A").count() == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert services.retry_failed_chunks(job) == 5  # the chunk's 3 items and LONG twice
    assert [r["attempt"] for r in sent] == [1, 1, 1]  # 4 items under A, 1 under B: fresh sends


def sent_chunk_id(job: Job) -> int:
    return JobChunk.objects.get(job=job, side="A", index=0).pk


def test_beat_resumes_stalled_jobs(
    settings: Any,
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    broker: FakeBroker,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.utils import timezone

    from labeling.tasks import resume_stalled_jobs

    schedule = settings.CELERY_BEAT_SCHEDULE["resume-stalled-jobs"]
    assert schedule["task"] == "labeling.resume_stalled_jobs"
    assert schedule["schedule"] == settings.COPE_RESUME_EVERY_SECONDS
    assert settings.COPE_RESUME_AFTER_SECONDS > settings.CELERY_TASK_TIME_LIMIT
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    sent.clear()
    assert resume_stalled_jobs() == 0  # just sent: within the grace
    old = timezone.now() - timedelta(seconds=settings.COPE_RESEND_GRACE_SECONDS + 1)
    JobChunk.objects.filter(job=job).update(sent_at=old)
    broker.held = set(JobChunk.objects.filter(job=job).values_list("pk", flat=True))
    assert resume_stalled_jobs() == 0  # the workers hold them all
    broker.held = set()
    with django_capture_on_commit_callbacks(execute=True):
        assert resume_stalled_jobs() == 6
    assert len(sent) == 6


def test_without_a_view_of_the_workers_a_chunk_is_lost_only_after_the_time_limit(
    settings: Any,
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    broker: FakeBroker,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.utils import timezone

    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    broker.held, broker.model_workers = None, None
    JobChunk.objects.filter(job=job).update(sent_at=timezone.now() - timedelta(minutes=5))
    assert services.resume_job(job) == 0
    late = timezone.now() - timedelta(seconds=settings.COPE_RESUME_AFTER_SECONDS + 1)
    JobChunk.objects.filter(job=job).update(sent_at=late)
    assert services.resume_job(job) == 6


def test_run_form_refuses_a_sample_larger_than_the_set(author: Any) -> None:
    from labeling.jobs.forms import JobStartForm

    small = make_sample_set(author, TEXTS[:5], name="Five")
    form = JobStartForm({"sample_set": small.pk, "sample_size": 6})
    assert not form.is_valid()
    assert "has only 5 items" in str(form.errors["sample_size"])
    assert JobStartForm({"sample_set": small.pk, "sample_size": 5}).is_valid()


def test_run_form_starts_from_the_last_jobs_sample(
    author: Any, version: Any, sample_set: Any
) -> None:
    from labeling.jobs.views import _rerun_initial

    assert _rerun_initial(version) == {}
    job = services.start_job(
        version=version, sample_set=sample_set, sample_size=4, by=author, seed=7
    )
    assert _rerun_initial(version) == {
        "sample_set": sample_set.pk,
        "sample_size": 4,
        "seed": job.sample_seed,
    }


# Background start, flow control, honest pages --------------------------------------------


def test_starting_only_creates_the_job_and_preparing_happens_in_a_task(
    client: Any,
    version: Any,
    sample_set: Any,
    author: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(broker, "send_prepare_job", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.start_job(
            version=version, sample_set=sample_set, sample_size=None, by=author
        )
    assert queued == [job.pk]
    assert job.is_preparing and job.item_count == 8 and not JobChunk.objects.filter(job=job)
    client.login(username=author.username, password=PASSWORD)
    page = client.get(reverse("labeling:job_detail", args=[job.pk])).content.decode()
    assert "Preparing" in page and 'hx-trigger="every 1s"' in page


def test_the_job_reads_both_texts_from_the_locked_version_row(
    version: Any, sample_set: Any, author: Any, sent: list
) -> None:
    from policies.models import Version

    Version.objects.filter(pk=version.pk).update(twin_text="A twin saved a moment ago.")
    # ``version`` is the stale instance the view loaded before the save.
    job = services.start_job(version=version, sample_set=sample_set, sample_size=None, by=author)
    assert job.text_b == "A twin saved a moment ago." and job.text_a == version.text
    Version.objects.filter(pk=version.pk).update(twin_text="  ")
    with pytest.raises(JobError, match="no twin"):
        services.start_job(version=version, sample_set=sample_set, sample_size=None, by=author)


def test_a_job_keeps_a_bounded_number_of_chunks_in_flight(
    settings: Any, author: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    settings.COPE_CHUNKS_IN_FLIGHT = 3
    version = make_version(author)
    big = make_sample_set(author, TEXTS * 4, name="Big")  # 32 items: 32 chunks of 1 per side
    job = start(version, big, author, django_capture_on_commit_callbacks, chunk_size=1)
    assert len(sent) == 3 and JobChunk.objects.filter(job=job).count() == 64
    # A second job started now gets its own chunks out at once: it does not wait for the first.
    other = start(version, big, author, django_capture_on_commit_callbacks, chunk_size=1)
    assert [r["job_id"] for r in sent] == [job.pk] * 3 + [other.pk] * 3
    handled = 0
    while handled < len(sent):
        request = sent[handled]
        with django_capture_on_commit_callbacks(execute=True):
            record_chunk(fake_result(request))
        handled += 1
        in_flight = JobChunk.objects.filter(status="queued", sent_at__isnull=False)
        assert in_flight.filter(job=job).count() <= 3 and in_flight.filter(job=other).count() <= 3
    assert handled == 128 and len({r["chunk_id"] for r in sent}) == 128
    job.refresh_from_db()
    assert job.status == JobStatus.PARTIAL and job.done_a == job.done_b == 28  # LONG ×4 failed
    # Each result sent one chunk of its own job: the two jobs alternate in the queue.
    assert [r["job_id"] for r in sent[6:12]] == [job.pk] * 3 + [other.pk] * 3


def test_the_speed_shown_is_items_over_the_jobs_wall_time(finished_job: Job) -> None:
    from datetime import timedelta as td

    Job.objects.filter(pk=finished_job.pk).update(
        created_at=finished_job.finished_at - td(seconds=70),
        started_at=finished_job.finished_at - td(seconds=1),  # first result: not the start
    )
    finished_job.refresh_from_db()
    progress = stats.job_progress(finished_job)
    assert progress.items_per_s == pytest.approx(7 / 70)


def test_partial_job_page_says_what_each_side_lost_and_why(
    client: Any,
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    record_chunk(fake_result(sent[0], error="<b>CUDA</b> out of memory"))
    run_all(sent[1:])
    client.login(username=author.username, password=PASSWORD)
    page = client.get(reverse("labeling:job_detail", args=[job.pk])).content.decode()
    assert "Partial" in page and "Retry failed items" in page
    assert "4 items under A" in page and "1 item under B" in page
    assert '3 × <span class="error">&lt;b&gt;CUDA&lt;/b&gt; out of memory' in page  # escaped
    assert '1 × <span class="error">over the token budget' in page


def test_a_finished_job_refreshes_the_planner_statistics(
    version: Any,
    sample_set: Any,
    author: Any,
    sent: list,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Statistics taken before a job wrote its rows made PostgreSQL plan the finish as a
    # quadratic nested loop where autoanalyze is off or behind: a large job analyzes its tables.
    from django.db import connection

    settings.COPE_ANALYZE_AFTER_ITEMS = 8
    ran: list[tuple[int, bool]] = []
    real = stats.analyze_after_job
    monkeypatch.setattr(
        stats, "analyze_after_job", lambda items: ran.append((items, real(items))) or True
    )
    job = start(version, sample_set, author, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        run_all(sent)
    job.refresh_from_db()
    assert job.finished_at is not None
    assert ran == [(8, connection.vendor == "postgresql")]
    settings.COPE_ANALYZE_AFTER_ITEMS = 9
    assert real(8) is False  # a smaller job leaves the statistics alone
