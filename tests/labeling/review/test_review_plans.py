"""The card's queries and their plans, on both databases: every read of a large table goes
through an index (a partial index of live work, or an index condition), never a walk over the
whole table; and the claim in a filter starts on the index that fits the filter."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.models import Decision, GoldLabel, Item, Job, Label, ReviewStatus, ReviewTask
from labeling.review.claim import QueueFilter, claim_next_task
from labeling.review.counts import queue_counts
from labeling.review.decisions import submit_decision
from labeling.review.earlier import earlier_decisions
from tests.labeling.review.test_review import make_job, make_policy, make_version
from tests.labeling.review.test_review_history import rerun

HTMX = {"HTTP_HX_REQUEST": "true"}
LARGE_MODELS = (ReviewTask, Item, Decision, Label, GoldLabel)
LARGE = {m._meta.db_table for m in LARGE_MODELS}
# Partial indexes hold only live work (open tasks, live claims, carried tasks): walking one
# whole is what the queue is built on, unlike walking a whole table.
PARTIAL = {i.name for m in LARGE_MODELS for i in m._meta.indexes if i.condition is not None}
Statement = tuple[str, Any]


@contextmanager
def statements() -> Iterator[list[Statement]]:
    """Each statement run inside, as sent: SQL with placeholders, and its parameters (so the
    plan is the one the database makes for the bound statement, not for literals)."""
    seen: list[Statement] = []

    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


def plan(sql: str, params: Any) -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table is scanned anyway
            cursor.execute(f"EXPLAIN {sql}", params)
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return [row[-1] for row in cursor.fetchall()]


_PG_SCAN = re.compile(
    r"(Seq Scan|Index Scan|Index Only Scan)(?: Backward)?(?: using (\S+))? on (\S+)"
)
_SQLITE_SCAN = re.compile(r"SCAN (\S+)(?: USING (?:COVERING )?INDEX (\S+))?")


def full_scans(lines: list[str]) -> list[str]:
    """The plan's reads of a large table that are not bounded by an index: a sequential scan,
    or a walk over a whole index that is not partial (no index condition)."""
    found = []
    for n, line in enumerate(lines):
        if connection.vendor == "postgresql":
            match = _PG_SCAN.search(line)
            if match is None or match[3] not in LARGE:
                continue
            details = []
            for later in lines[n + 1 :]:
                if "->" in later:
                    break
                details.append(later)
            bounded = match[1] != "Seq Scan" and (
                match[2] in PARTIAL or any("Index Cond" in d for d in details)
            )
        else:
            match = _SQLITE_SCAN.search(line)
            if match is None or match[1] not in LARGE:
                continue
            bounded = match[2] in PARTIAL
        if not bounded:
            found.append(line.strip())
    return found


def task_index_reads(lines: list[str], *, live_work: bool = True) -> list[str]:
    """The conditions by which a plan reads the task table: PostgreSQL's index conditions under
    a scan of it, SQLite's searches of it. ``live_work`` False leaves out PostgreSQL's reads of
    a partial index (live work only: open tasks, claims), which are bounded whatever the filter."""
    if connection.vendor != "postgresql":  # a subquery's table goes by its alias there
        return [line for line in lines if "labeling_reviewtask" in line or "INDEX review_" in line]
    found, on_tasks = [], False
    for line in lines:
        if " on " in line and ("Scan" in line):
            on_tasks = "labeling_reviewtask" in line or " on review_" in line
            match = _PG_SCAN.search(line)
            if not live_work and match is not None and match[2] in PARTIAL:
                on_tasks = False
        elif on_tasks and "Index Cond" in line:
            found.append(line)
    assert found or not lines
    return found


def large_table_reads(seen: list[Statement]) -> list[Statement]:
    return [
        (sql, params)
        for sql, params in seen
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))
        and any(f'"{table}"' in sql for table in LARGE)
    ]


def _card_data(author: Any, reviewer: Any) -> Job:
    """Two jobs: the first's content decided; the second's open, near-identical (same start)."""
    start = "Long content that starts the same way in both jobs and goes on well past the prefix"
    first = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=[start + " A", "x"])
    for _ in range(2):
        task = claim_next_task(reviewer=reviewer, job=first)
        assert task is not None
        submit_decision(task=task, reviewer=reviewer, label="1", wording="a")
    return make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 3, texts=[start + " B", "y", "z"])


@pytest.mark.parametrize("scope", ["any", "job", "policy"])
def test_the_cards_queries_read_large_tables_through_indexes(
    author: Any, reviewer: Any, second_reviewer: Any, scope: str
) -> None:
    job = _card_data(author, reviewer)
    query = {"any": {}, "job": {"job": job.pk}, "policy": {"policy": job.version.policy_id}}
    client = Client()
    client.force_login(second_reviewer)
    client.get(
        reverse("labeling:queue"), {"start": 1}
    )  # session and permissions read; a claim held
    ReviewTask.objects.filter(claimed_by=second_reviewer).update(
        status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None
    )

    with statements() as seen:
        response = client.get(reverse("labeling:queue"), query[scope], **HTMX)

    assert response.status_code == 200 and "Long content that starts" in response.content.decode()
    reads = large_table_reads(seen)
    plans = [(sql, plan(sql, params)) for sql, params in reads]
    scans = [(sql, full_scans(lines)) for sql, lines in plans if full_scans(lines)]
    assert not scans, scans
    # The earlier decisions were found through the prefix index (the content hash differs).
    item_lookups = [lines for sql, lines in plans if "SUBSTR" in sql and '"content_hash" = ' in sql]
    assert item_lookups and all(
        any("item_text_prefix" in line for line in lines) for lines in item_lookups
    ), item_lookups
    # A policy's counts read only that policy's tasks. SQLite, which plans without statistics,
    # reads the resolved ones through the index on policy and status: it took the one on status
    # alone before there was one, and walked every policy's resolved tasks (24 ms at 1M labels,
    # growing with the history). PostgreSQL may read them by policy and check the status, and
    # may count a policy's claims from the partial index of live claims (by expiry), which holds
    # no history: with some statistics it does.
    if scope == "policy":
        (counts,) = [lines for sql, lines in plans if "capped" in sql]
        conditions = task_index_reads(counts, live_work=False)
        assert all("policy_id" in line for line in conditions), conditions
        if connection.vendor == "sqlite":
            assert any("review_policy_status" in line for line in conditions), conditions
    # Each of the card's steps is among the statements checked.
    tables = " ".join(sql for sql, _params in reads)
    for table in ("labeling_reviewtask", "labeling_item", "labeling_decision"):
        assert table in tables


def test_the_card_joins_large_tables_only_on_sqlite(author: Any, reviewer: Any) -> None:
    # On PostgreSQL a join of tasks, items or decisions is planned by probing the ends of their
    # indexes, milliseconds per query once the tables hold dead rows: the card reads each large
    # table by key instead. SQLite keeps no statistics to probe: there the picked task comes
    # with its item and job in one statement (its plan is checked above: keys, no scan).
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["same words", "same words"])
    first = claim_next_task(reviewer=reviewer)
    assert first is not None
    submit_decision(task=first, reviewer=reviewer, label="1", wording="a")
    large = ("labeling_reviewtask", "labeling_item", "labeling_decision", "labeling_label")
    with CaptureQueriesContext(connection) as queries:
        task = claim_next_task(reviewer=reviewer)
        assert task is not None
    with CaptureQueriesContext(connection) as earlier_queries:
        earlier = earlier_decisions(task)
    assert earlier and earlier[0].snippet == "same words"
    assert earlier[0].job.version.policy == task.policy
    assert task.item.text == "same words" and task.job.text_a and task.policy.name
    item_reads = [q["sql"] for q in queries.captured_queries if '"labeling_item"' in q["sql"]]
    assert len(item_reads) == 1, item_reads
    joined = [
        q["sql"]
        for q in queries.captured_queries
        if len([t for t in large if f'"{t}"' in q["sql"]]) > 1 and "JOIN" in q["sql"]
    ]
    if connection.vendor == "postgresql":
        assert not joined, joined
    else:
        (card,) = joined
        assert '"labeling_job"' in card and card == item_reads[0]
    for query in earlier_queries.captured_queries:
        tables = [t for t in large if f'"{t}"' in query["sql"]]
        assert len(tables) <= 1 or "JOIN" not in query["sql"], query["sql"]


def _tasks(job: Job, count: int, status: str, *, carried: bool = False) -> None:
    items = Item.objects.bulk_create(
        Item(
            sample_set=job.sample_set,
            external_id=f"bulk-{job.pk}-{i}",
            text=f"task {i} of job {job.pk}",
            content_hash=f"{job.pk:08x}{i:056x}",
            row_number=1000 + i,
        )
        for i in range(count)
    )
    ReviewTask.objects.bulk_create(
        ReviewTask(
            job=job,
            item=item,
            policy=job.version.policy,
            label_a=1,
            label_b=0,
            p1_a=0.9,
            p1_b=0.1,
            status=status,
            carried_over=carried,
        )
        for item in items
    )


def test_a_claim_in_a_filter_starts_at_the_filters_own_open_tasks(
    author: Any, reviewer: Any
) -> None:
    """A policy's open tasks come in runs of ids, one run per job, and every policy's jobs are
    interleaved in time. Ordered by id, PostgreSQL walks the whole queue's open tasks from the
    oldest, filtering (it takes each policy's tasks to be spread evenly): here 900 of other
    policies' before the first of ours. The claim must start on the index that fits the
    filter."""
    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's choice among indexes, made from its statistics")
    versions = [make_version(make_policy(author), author) for _ in range(10)]
    for status in (ReviewStatus.RESOLVED, ReviewStatus.RESOLVED, ReviewStatus.OPEN):
        for version in versions:
            _tasks(make_job(author=author, version=version, mismatches=[]), 100, status)
    ours = Job.objects.filter(version=versions[-1]).latest("id")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labeling_reviewtask")
    for scope, index in (
        ({"job": ours}, "review_open_job"),
        ({"policy": ours.version.policy}, "review_open_policy"),
    ):
        with statements() as seen:
            task = claim_next_task(reviewer=reviewer, **scope)
        assert task is not None and task.job_id == ours.pk
        pick = next(
            (sql, params)
            for sql, params in seen
            if "SKIP LOCKED" in sql and ReviewStatus.OPEN in params
        )
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {pick[0]}", pick[1])
            lines = "\n".join(row[0] for row in cursor.fetchall())
        assert index in lines and "review_open_id" not in lines, lines
        submit_decision(task=task, reviewer=reviewer, label="1", wording="a")


def test_a_policys_counts_read_the_policys_own_index_in_order(author: Any) -> None:
    """The counts over the card for a policy filter, on the history's shape (every policy's jobs
    interleaved in time): its open and carried-over tasks are counted up to the cap from the
    indexes that start with the policy, read in order. Left to choose, PostgreSQL walked every
    policy's open tasks and filtered (at 5M labels 1,155 buffers against 188 read in order) and
    read the table for the carried-over ones."""
    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's choice among indexes, made from its statistics")
    versions = [make_version(make_policy(author), author) for _ in range(10)]
    for status, carried in ((ReviewStatus.RESOLVED, True), (ReviewStatus.OPEN, False)) * 2:
        for version in versions:
            _tasks(
                make_job(author=author, version=version, mismatches=[]), 50, status, carried=carried
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labeling_reviewtask")
    policy = versions[-1].policy
    with statements() as seen:
        counts = queue_counts(QueueFilter(policy=policy), cap=10)
    assert counts.open_over_cap and counts.carried_over_cap
    (sql, params) = next((sql, params) for sql, params in seen if "capped" in sql)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        lines = "\n".join(row[0] for row in cursor.fetchall())
    assert "review_open_policy" in lines and "review_open_id" not in lines, lines
    assert "review_carried_policy" in lines, lines


def test_a_decision_finds_its_content_in_reruns_through_the_content_index(
    author: Any, reviewer: Any
) -> None:
    """A decision settles the same content's open tasks in reruns under the same two texts
    (``carry_over.carry_to_open_reruns``), inside the decision's write. The content's items in
    the reruns' sets are read through the index on (content hash, set): SQLite, which plans
    without statistics, read every item of those sets through the set's index before there was
    one (9 ms at 1M labels, growing with the sets, while every other writer waited)."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 3, agreed=20)
    again = rerun(job, author)
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None

    with statements() as seen:
        submit_decision(task=task, reviewer=reviewer, label="1", wording="a")

    lookups = [
        (sql, params)
        for sql, params in seen
        if '"labeling_item"' in sql and '"content_hash" = (SELECT' in sql
    ]
    assert len(lookups) == 1, [sql for sql, _params in seen]
    lines = plan(*lookups[0])
    assert any("item_hash_set" in line for line in lines), lines
    carried = ReviewTask.objects.get(job=again, item_id=task.item_id)
    assert carried.status == ReviewStatus.RESOLVED and carried.carried_over
