"""A decision's save makes no round trip it can spare: its task and vote rule in one statement,
and the reruns' open tasks of its content found and locked in one. On PostgreSQL each round trip
of a request waits for a database process to be scheduled, which under load costs more than the
statement."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.models import ReviewStatus, ReviewTask
from labeling.review.claim import claim_next_task
from labeling.review.votes import needs_votes, task_with_vote_rule
from tests.labeling.review.test_review import decide, make_job
from tests.labeling.review.test_review_history import rerun


def _reads_of_task(queries: CaptureQueriesContext, task_id: int) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT")
        and 'FROM "labeling_reviewtask"' in q["sql"]
        and f'"labeling_reviewtask"."id" = {task_id}' in q["sql"]
    ]


def test_the_save_reads_its_task_and_vote_rule_in_one_statement(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None
    client = Client()
    client.force_login(reviewer)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            reverse("labeling:review_submit", args=[task.pk]), {"label": "1", "wording": "a"}
        )
    assert response.status_code == 302
    reads = _reads_of_task(queries, task.pk)
    assert len(reads) == 1, reads
    assert "review_overlap" in reads[0]
    assert ReviewTask.objects.get(pk=task.pk).status == ReviewStatus.RESOLVED


def test_a_task_read_with_its_vote_rule_answers_without_a_query(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    task = ReviewTask.objects.get(job=job)
    with_rule = task_with_vote_rule(task.pk)
    with CaptureQueriesContext(connection) as queries:
        assert needs_votes(with_rule) is False
    assert len(queries) == 0
    # A task read without it asks (one statement), and both say the same when overlap is on.
    policy = job.version.policy
    policy.review_overlap = 2
    policy.save()
    with CaptureQueriesContext(connection) as queries:
        assert needs_votes(task) is True
    assert len(queries) == 1
    assert needs_votes(task_with_vote_rule(task.pk)) is True


def test_a_decision_finds_and_locks_the_reruns_open_tasks_in_one_statement(
    author: Any, reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    again = rerun(job, author)
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None
    with CaptureQueriesContext(connection) as queries:
        decide(task, reviewer, label="0")
    carried = again.review_tasks.get()
    assert carried.status == ReviewStatus.RESOLVED and carried.carried_over
    open_reads = [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT")
        and 'FROM "labeling_reviewtask"' in q["sql"]
        and "'open'" in q["sql"]
    ]
    assert len(open_reads) == 1, open_reads
    if connection.features.has_select_for_update:
        assert open_reads[0].endswith("FOR UPDATE")
