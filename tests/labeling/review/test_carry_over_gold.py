"""Gold written by carry-over is kept in the gold history, and never replaces newer gold."""

from __future__ import annotations

from typing import Any

from labeling.models import GoldChange, GoldLabel, GoldSource
from labeling.review.carry_over import carry_over_decisions
from labeling.review.claim import claim_next_task
from tests.labeling.review.test_review import decide, make_job, tasks_of
from tests.labeling.review.test_review_history import rerun


def test_carried_gold_is_recorded_with_the_decision_and_its_reviewer(
    author: Any, reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    decide(claim_next_task(reviewer=reviewer), reviewer, label="1")
    # The item has no gold row (removed since): the carried decision writes it.
    GoldLabel.objects.all().delete()
    GoldChange.objects.all().delete()
    again = rerun(job, author)

    assert carry_over_decisions(job_id=again.pk) == 1

    carried = tasks_of(again)[0].decision
    change = GoldChange.objects.get()
    assert (change.old_label, change.new_label, change.new_source) == ("", "1", GoldSource.REVIEW)
    assert change.decision_id == carried.pk and change.changed_by_id == reviewer.pk
    assert "carried over" in change.note
    assert GoldLabel.objects.get().decision_id == carried.pk


def test_carry_over_records_nothing_where_gold_already_exists(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    decide(claim_next_task(reviewer=reviewer), reviewer, label="1")
    before = GoldChange.objects.count()
    again = rerun(job, author)

    assert carry_over_decisions(job_id=again.pk) == 1

    assert GoldChange.objects.count() == before  # the gold row stays; nothing changed
