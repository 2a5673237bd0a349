"""Explain runs with the broker's send captured: starting, recording (idempotent), honest
outcomes, cancel, lost chunks, the automatic start after a job and the pages' reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from labeling.explain import services, summary
from labeling.jobs.broker import BrokerView
from labeling.models import (
    ChunkStatus,
    ExplainChunk,
    ExplainFinding,
    ExplainItem,
    ExplainRun,
    ExplainScore,
    ExplainStatus,
    FindingRole,
    GoldLabel,
)
from labeling.tasks import record_explain
from tests.labeling.explain.conftest import answer, make_finished_job
from worker.variants import build_variants, distinct

pytestmark = pytest.mark.django_db

DECIDER = "label/HA1/includes/1"
ROWS = [
    ("an insult to Sam", 1, 0),  # mismatch: decided by DECIDER
    ("nice weather", 0, 0),
    ("a threat to Jo", 1, 1),
    ("another insult, Kim", 1, 0),  # mismatch
    ("failed item", 1, None),  # no B label: not a mismatch
    ("one more insult, Al", 1, 0),  # mismatch
]


def rule(key: str, text: str) -> tuple[int | None, float | None]:
    """Insults: A says 1, B says 0; A with B's wording of DECIDER says 0; A without DECIDER
    says 0 (so it is necessary for A's label). Every other variant scores like its base."""
    a, b = (1, 0) if "insult" in text else (1, 1) if "threat" in text else (0, 0)
    if "insult" in text and key in (f"A<B:{DECIDER}", f"A-:{DECIDER}"):
        return 0, -1.5 if "<" in key else -0.5
    base = a if key.startswith("A") else b
    return base, 2.0 if base else -2.0


@contextmanager
def committed(capture: Any) -> Iterator[None]:
    with capture(execute=True):
        yield


def start(job: Any, capture: Any, **kw: Any) -> ExplainRun:
    with committed(capture):
        return services.start_explain(job, kw.pop("by", None), **kw)


def deliver(sent: list[dict[str, Any]], capture: Any, *, error: str = "") -> list[str]:
    """Answer every captured request (and those the answers send) until none is left."""
    actions = []
    while sent:
        request = sent.pop(0)
        with committed(capture):
            actions.append(record_explain(answer(request, rule, error=error)))
    return actions


def test_a_run_sends_the_mismatches_with_every_distinct_variant(
    author: Any, explain_sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_finished_job(author, ROWS)
    run = start(job, django_capture_on_commit_callbacks)
    mismatches = [i.pk for i in job.sample_set.items.order_by("pk") if "insult" in i.text]
    assert run.items_total == 3 and run.requested_by is None and run.status == "running"
    keys = [v.key for v in distinct(build_variants(job.text_a, job.text_b))]
    assert run.variants == len(keys) and len(explain_sent) == run.chunk_count == 1
    request = explain_sent[0]
    assert [v["key"] for v in request["variants"]] == keys
    assert [i["item_id"] for i in request["items"]] == mismatches
    assert request["run_id"] == run.pk and request["attempt"] == 1


def test_recording_concludes_each_item_and_the_pages_read_it(
    author: Any, explain_sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_finished_job(author, ROWS)
    run = start(job, django_capture_on_commit_callbacks)
    assert deliver(explain_sent, django_capture_on_commit_callbacks) == ["recorded"]
    run.refresh_from_db()
    assert run.status == ExplainStatus.SUCCEEDED and run.items_done == 3 and run.finished_at
    assert run.backend == "fake" and run.model_seconds == 0.25
    assert run.scores == ExplainScore.objects.filter(run=run).count() == 3 * run.variants
    items = ExplainItem.objects.filter(job=job)
    assert {(i.verdict, i.clause_a, i.clause_b) for i in items} == {("decided", DECIDER, DECIDER)}
    view = summary.job_explanation(job)
    assert view.latest == run and not view.active and view.mismatches_explained == 3
    top = view.clauses[0]
    assert (top.side, top.clause, top.decides, top.necessary) == ("A", DECIDER, 3, 3)
    assert top.name == "Insults aimed at a **Target**." or top.start_line > 0
    insult_ids = {i.pk for i in job.sample_set.items.all() if "insult" in i.text}
    assert set(summary.decided_item_ids(job, DECIDER)) == insult_ids
    one = summary.item_explanation(job, min(insult_ids))
    assert one is not None and one.clause_a is not None and one.clause_a.key == DECIDER
    assert [c.key for c in one.necessary_a] == [DECIDER] and one.necessary_b == []


def test_a_second_answer_for_a_chunk_changes_nothing(
    author: Any, explain_sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_finished_job(author, ROWS)
    run = start(job, django_capture_on_commit_callbacks)
    request = explain_sent[0]
    with committed(django_capture_on_commit_callbacks):
        assert record_explain(answer(request, rule)) == "recorded"
    before = (
        ExplainRun.objects.filter(pk=run.pk).values().get(),
        list(ExplainScore.objects.order_by("pk").values()),
        list(ExplainFinding.objects.order_by("pk").values()),
    )
    with committed(django_capture_on_commit_callbacks):
        assert record_explain(answer(request, rule)) == "duplicate"
        assert record_explain(answer(request, rule, error="late failure")) == "duplicate"
    after = (
        ExplainRun.objects.filter(pk=run.pk).values().get(),
        list(ExplainScore.objects.order_by("pk").values()),
        list(ExplainFinding.objects.order_by("pk").values()),
    )
    assert after == before
    assert record_explain({"run_id": "x"}) == "rejected"


def test_the_window_holds_few_chunks_and_each_answer_sends_the_next(
    author: Any,
    explain_sent: list,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.COPE_CHUNKS_IN_FLIGHT = 2
    job = make_finished_job(author, [(f"insult {n}", 1, 0) for n in range(9)])
    n_variants = len(distinct(build_variants(job.text_a, job.text_b)))
    monkeypatch.setattr(services, "SCORES_PER_CHUNK", 2 * n_variants)
    run = start(job, django_capture_on_commit_callbacks)
    assert run.chunk_count == 5 and run.chunk_size == 2 and len(explain_sent) == 2
    deliver(explain_sent, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == ExplainStatus.SUCCEEDED and run.chunks_done == 5 and run.items_done == 9


def test_every_chunk_failing_fails_the_run_with_the_workers_error(
    author: Any, explain_sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_finished_job(author, ROWS)
    run = start(job, django_capture_on_commit_callbacks)
    deliver(explain_sent, django_capture_on_commit_callbacks, error="CUDA out of memory")
    run.refresh_from_db()
    assert run.status == ExplainStatus.FAILED and run.error == "CUDA out of memory"
    assert run.items_done == 0 and run.items_failed == 3
    assert set(ExplainItem.objects.filter(job=job).values_list("verdict", flat=True)) == {"failed"}
    assert summary.job_explanation(job).failed == 3


def test_a_partial_run_says_how_many_items_were_explained(
    author: Any,
    explain_sent: list,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = make_finished_job(author, ROWS)
    n_variants = len(distinct(build_variants(job.text_a, job.text_b)))
    monkeypatch.setattr(services, "SCORES_PER_CHUNK", 2 * n_variants)
    run = start(job, django_capture_on_commit_callbacks)
    first, second = explain_sent
    with committed(django_capture_on_commit_callbacks):
        record_explain(answer(first, rule))
        record_explain(answer(second, rule, error="worker lost"))
    run.refresh_from_db()
    assert run.status == ExplainStatus.PARTIAL
    assert run.error == "Explained 2 of 3 items; 1 could not be: worker lost"


def test_a_cancelled_run_sends_nothing_more_and_ignores_late_answers(
    author: Any,
    explain_sent: list,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.COPE_CHUNKS_IN_FLIGHT = 1
    job = make_finished_job(author, ROWS)
    monkeypatch.setattr(services, "SCORES_PER_CHUNK", 1)
    run = start(job, django_capture_on_commit_callbacks)
    assert len(explain_sent) == 1
    assert services.cancel_explain(run) and not services.cancel_explain(run)
    assert deliver(explain_sent, django_capture_on_commit_callbacks) == ["ignored"]
    assert explain_sent == [] and not ExplainItem.objects.exists()
    # Even the answer for a chunk given up before the cancel reopens nothing.
    chunk = ExplainChunk.objects.filter(run=run, sent_at__isnull=False).get()
    ExplainChunk.objects.filter(pk=chunk.pk).update(status=ChunkStatus.FAILED)
    request = {"run_id": run.pk, "chunk_id": chunk.pk, "variants": [], "items": [], "contract": 1}
    with committed(django_capture_on_commit_callbacks):
        assert record_explain(answer(request, rule)) == "ignored"
    run.refresh_from_db()
    assert run.status == ExplainStatus.CANCELLED


def test_lost_chunks_are_sent_again_then_given_up(
    author: Any,
    explain_sent: list,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.COPE_MAX_CHUNK_ATTEMPTS = 2
    view = BrokerView(queued=frozenset(), held=frozenset(), model_workers=1)
    monkeypatch.setattr(services.broker, "look", lambda: view)
    job = make_finished_job(author, ROWS)
    run = start(job, django_capture_on_commit_callbacks)
    chunk = ExplainChunk.objects.get(run=run)
    explain_sent.clear()
    assert services.resume_stalled_runs() == {}  # sent just now: not lost yet
    old = timezone.now() - timedelta(hours=1)
    ExplainChunk.objects.filter(pk=chunk.pk).update(sent_at=old)
    with committed(django_capture_on_commit_callbacks):
        assert services.resume_stalled_runs() == {run.pk: 1}
    assert [r["attempt"] for r in explain_sent] == [2]
    ExplainChunk.objects.filter(pk=chunk.pk).update(sent_at=old)
    with committed(django_capture_on_commit_callbacks):
        services.resume_stalled_runs()
    chunk.refresh_from_db()
    run.refresh_from_db()
    assert chunk.status == ChunkStatus.FAILED and "COPE_MAX_CHUNK_ATTEMPTS=2" in chunk.error
    assert run.status == ExplainStatus.FAILED and run.items_failed == 3
    # The given-up chunk's answer still arrives: its scores win and the run is finished again.
    with committed(django_capture_on_commit_callbacks):
        assert record_explain(answer(explain_sent[0], rule)) == "recorded"
    run.refresh_from_db()
    assert run.status == ExplainStatus.SUCCEEDED and run.items_done == 3 and run.items_failed == 0


def test_a_finished_job_explains_its_mismatches_once_and_more_on_request(
    author: Any, explain_sent: list, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.COPE_EXPLAIN_MAX_ITEMS = 2
    job = make_finished_job(author, ROWS)
    with committed(django_capture_on_commit_callbacks):
        run = services.explain_after_job(job.pk)
    assert run is not None and run.items_total == 2 and run.requested_by is None
    assert services.explain_after_job(job.pk) is None  # once per job
    with pytest.raises(services.ExplainError, match="still explaining"):
        services.explain_more(job, author)
    deliver(explain_sent, django_capture_on_commit_callbacks)
    with committed(django_capture_on_commit_callbacks):
        more = services.explain_more(job, author)
    assert (more.attempt, more.items_total, more.requested_by) == (2, 1, author)
    deliver(explain_sent, django_capture_on_commit_callbacks)
    assert ExplainItem.objects.filter(job=job, verdict="decided").count() == 3
    with pytest.raises(services.ExplainError, match="Every mismatch"):
        services.explain_more(job, author)


def test_a_second_run_takes_only_the_mismatches_no_run_is_explaining(
    author: Any, explain_sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_finished_job(author, ROWS)
    start(job, django_capture_on_commit_callbacks, max_items=2)
    assert start(job, django_capture_on_commit_callbacks, by=author).items_total == 1
    with pytest.raises(services.ExplainError, match="Every mismatch"):
        services.start_explain(job, author)


def test_only_a_succeeded_job_with_mismatches_starts_a_run_by_itself(
    author: Any, explain_sent: list, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    partial = make_finished_job(author, ROWS, status="partial")
    agreeing = make_finished_job(author, [("a", 1, 1), ("b", 0, 0)])
    assert services.explain_after_job(partial.pk) is None
    assert services.explain_after_job(agreeing.pk) is None
    settings.COPE_EXPLAIN_MAX_ITEMS = 0
    assert services.explain_after_job(make_finished_job(author, ROWS).pk) is None
    assert not ExplainRun.objects.exists() and explain_sent == []


def test_a_clause_whose_removal_fixes_a_wrong_label_causes_a_gold_miss(
    author: Any, explain_sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_finished_job(author, ROWS)
    insult = job.sample_set.items.filter(text__contains="insult").order_by("pk").first()
    GoldLabel.objects.create(policy=job.version.policy, item=insult, label="0", decided_by=author)
    start(job, django_capture_on_commit_callbacks)
    deliver(explain_sent, django_capture_on_commit_callbacks)
    misses = ExplainFinding.objects.filter(job=job, role=FindingRole.GOLD_MISS)
    assert list(misses.values_list("item_id", "side", "clause")) == [(insult.pk, "A", DECIDER)]
    assert ExplainItem.objects.get(job=job, item=insult).gold == 0
    assert summary.job_explanation(job).clauses[0].gold_misses == 1


def test_the_beat_task_that_resumes_jobs_resends_lost_explain_chunks(
    author: Any,
    explain_sent: list,
    django_capture_on_commit_callbacks: Any,
    broker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from labeling.tasks import resume_stalled_jobs

    view = BrokerView(queued=frozenset(), held=frozenset(), model_workers=1)
    monkeypatch.setattr(services.broker, "look", lambda: view)
    run = start(make_finished_job(author, ROWS), django_capture_on_commit_callbacks)
    explain_sent.clear()
    ExplainChunk.objects.filter(run=run).update(sent_at=timezone.now() - timedelta(hours=1))
    with committed(django_capture_on_commit_callbacks):
        assert resume_stalled_jobs() == 1
    assert [(r["run_id"], r["attempt"]) for r in explain_sent] == [(run.pk, 2)]
