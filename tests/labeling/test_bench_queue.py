"""The review queue benchmark's history: built by SQL on both databases, and removed after."""

from __future__ import annotations

import pytest
from django.db.models import Count, Max

from labeling.management.commands._queue_history import (
    JOBS_PER_STAGE,
    POLICIES,
    clean,
    count,
    grow_to,
    settle,
    start_history,
)
from labeling.models import Decision, GoldLabel, Item, Job, Label, ReviewStatus, ReviewTask

pytestmark = pytest.mark.django_db


def test_history_has_the_labels_items_and_decisions_asked_for_and_leaves_nothing() -> None:
    history = start_history(reviewers=3, set_factor=2.5)
    grow_to(history, 2_000)
    grow_to(history, 6_000)

    jobs = POLICIES * JOBS_PER_STAGE * 2
    assert len(history.jobs) == jobs
    assert count(Label, history) == 6_000
    # Sample sets 2.5 times the jobs' samples: 20 + 40 labelled items per set, 50 + 100 stored.
    assert Item.objects.count() == POLICIES * (50 + 100)
    sampled = Job.objects.filter(pk__in=history.jobs).values_list("sample_size", flat=True)
    assert set(sampled) == {20, 40}
    tasks = ReviewTask.objects.filter(job_id__in=history.jobs)
    assert 0 < tasks.filter(status=ReviewStatus.OPEN).count() < tasks.count()
    assert count(Decision, history) == tasks.filter(status=ReviewStatus.RESOLVED).count()
    assert tasks.filter(carried_over=True).exists()
    assert {d.reviewer_id for d in Decision.objects.all()} == {u.pk for u in history.reviewers}
    # One gold label per decided item and policy, from that item's newest decision.
    gold = GoldLabel.objects.filter(policy__in=history.policies)
    assert gold.count() == tasks.filter(decision__isnull=False).values("item_id").distinct().count()
    per_item = Decision.objects.values("task__item_id").annotate(n=Count("id"), newest=Max("id"))
    assert any(row["n"] > 1 for row in per_item)
    newest = {row["task__item_id"]: row["newest"] for row in per_item}
    assert {g.item_id: g.decision_id for g in gold} == newest
    # Contents repeat across policies' sets: earlier decisions on the same content exist.
    assert Item.objects.values("content_hash").distinct().count() < Item.objects.count()

    clean(history)
    for model in (Item, Label, ReviewTask, Decision, GoldLabel, Job):
        assert not model.objects.exists(), model.__name__


@pytest.mark.django_db(transaction=True)  # as the benchmark runs it: outside a transaction
def test_settling_writes_the_builds_pages_to_disk_before_measuring() -> None:
    """The history's pages are flushed (PostgreSQL's CHECKPOINT, SQLite's WAL folded in), so
    the measurement does not share the machine with the build's write-back; the output says so."""
    settled = settle(0)
    assert settled["flushed"] in ("CHECKPOINT, sync", "wal_checkpoint(TRUNCATE), sync")
