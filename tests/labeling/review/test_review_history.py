"""The review queue with history: carry-over to reruns, reuse, capped counts, indexed lookups,
paged notes, the bounded wording diff and the policy list's fixed query count."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.jobs.services import maybe_finish_job
from labeling.models import (
    Decision,
    GoldLabel,
    Item,
    Job,
    JobStatus,
    Label,
    ReviewStatus,
    ReviewTask,
)
from labeling.review.diff import MAX_CHARS, wording_diff
from labeling.review.services import (
    NOTES_GROUPS_PER_PAGE,
    NOTES_SAMPLES_PER_GROUP,
    QueueFilter,
    carry_over_decisions,
    claim_next_task,
    earlier_decisions,
    queue_counts,
    reusable_decision,
    review_notes,
    submit_decision,
)
from policies import services as policy_services
from tests.conftest import POLICY_TEXT, TWIN_TEXT
from tests.labeling.review.test_review import decide, make_job, make_policy, make_version, tasks_of

HTMX = {"HTTP_HX_REQUEST": "true"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rerun(job: Job, author: Any, *, text_a: str | None = None) -> Job:
    """A new job of the same version on the same items, with tasks for the same mismatches."""
    again = Job.objects.create(
        version=job.version,
        sample_set=job.sample_set,
        status=JobStatus.SUCCEEDED,
        text_a=text_a if text_a is not None else job.text_a,
        text_b=job.text_b,
        item_count=job.item_count,
        created_by=author,
        finished_at=timezone.now(),
    )
    for task in tasks_of(job):
        ReviewTask.objects.create(
            job=again,
            item=task.item,
            policy=task.policy,
            label_a=task.label_a,
            label_b=task.label_b,
            p1_a=task.p1_a,
            p1_b=task.p1_b,
        )
    return again


# --- carry-over ---------------------------------------------------------------------------------


def test_rerun_under_the_same_texts_is_not_asked_again(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7), (1, 0.6, 0.4)])
    for label in ("0", "u"):
        decide(claim_next_task(reviewer=reviewer, job=job), reviewer, label=label, quote="x y")
    again = rerun(job, author)

    carried = carry_over_decisions(job_id=again.pk)

    assert carried == 2
    new_first, new_second, new_third = tasks_of(again)
    for task, label in ((new_first, "0"), (new_second, "u")):
        assert task.status == ReviewStatus.RESOLVED and task.carried_over
        assert (task.decision.label, task.decision.reviewer) == (label, reviewer)
        assert task.decision.carried_from.task.job_id == job.pk
        assert task.decision.quote == "x y"
    assert new_third.status == ReviewStatus.OPEN and not new_third.carried_over
    # Only the undecided mismatch is offered; counts name the carried ones apart.
    assert claim_next_task(reviewer=reviewer, job=again).pk == new_third.pk
    counts = queue_counts(QueueFilter(job=again))
    assert (counts.open, counts.claimed, counts.resolved, counts.carried) == (0, 1, 2, 2)
    notes = review_notes(again)
    assert notes.decided == 2 and notes.carried == 2


@pytest.mark.parametrize("returning", [True, False])
def test_carry_over_with_or_without_update_returning(
    author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    from labeling.review import services as review

    monkeypatch.setattr(review, "update_returning", lambda: returning)
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    for _ in range(2):
        decide(claim_next_task(reviewer=reviewer), reviewer, label="1", note="seen")
    again = rerun(job, author)
    assert carry_over_decisions(job_id=again.pk) == 2
    carried = again.review_tasks.all()
    assert all(t.status == ReviewStatus.RESOLVED and t.carried_over for t in carried)
    assert sorted(Decision.objects.filter(task__job=again).values_list("note", flat=True)) == [
        "seen",
        "seen",
    ]
    assert GoldLabel.objects.filter(decision__task__job=job).count() == 2


def test_carry_over_is_idempotent_and_keeps_a_newer_gold_label(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    decide(claim_next_task(reviewer=reviewer), reviewer, label="1")
    gold = GoldLabel.objects.get()
    GoldLabel.objects.filter(pk=gold.pk).update(label="0")  # typed later on the items page
    again = rerun(job, author)

    assert carry_over_decisions(job_id=again.pk) == 1
    assert carry_over_decisions(job_id=again.pk) == 0

    assert GoldLabel.objects.get().label == "0"
    assert Decision.objects.count() == 2


def test_changed_text_is_asked_again_with_the_earlier_decision_to_reuse(
    author: Any, reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    earlier = decide(claim_next_task(reviewer=reviewer), reviewer, label="u", note="unclear")
    again = rerun(job, author, text_a=POLICY_TEXT + "\nA clarified clause.\n")

    assert carry_over_decisions(job_id=again.pk) == 0
    task = claim_next_task(reviewer=reviewer, job=again)
    assert task is not None
    assert reusable_decision(task) == earlier
    reused = decide(
        task, reviewer, label=earlier.label, wording=earlier.wording, note="unclear", reused=earlier
    )
    assert reused.carried_from == earlier
    task.refresh_from_db()
    assert not task.carried_over  # a reviewer's own choice, not an automatic carry-over


def test_reusable_decision_is_only_from_the_same_policy(author: Any, reviewer: Any) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)], texts=["shared text"])
    decide(claim_next_task(reviewer=reviewer), reviewer)
    other = make_job(author=author, mismatches=[(1, 0.9, 0.1)], texts=["shared text"])
    task = claim_next_task(reviewer=reviewer, job=other)
    assert earlier_decisions(task) and reusable_decision(task) is None


def test_a_decision_settles_the_open_task_of_a_rerun_made_before_it(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    again = rerun(job, author)  # both jobs' tasks open at once

    decide(claim_next_task(reviewer=reviewer, job=job), reviewer, label="0")

    twin = again.review_tasks.get()
    assert twin.status == ReviewStatus.RESOLVED and twin.carried_over
    assert claim_next_task(reviewer=second_reviewer) is None


def test_finishing_a_job_carries_decisions_over(author: Any, reviewer: Any) -> None:
    """The hook in ``maybe_finish_job``: tasks are created, then earlier decisions carried."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.3, 0.6)])
    decide(claim_next_task(reviewer=reviewer), reviewer, label="1")
    again = Job.objects.create(
        version=job.version,
        sample_set=job.sample_set,
        status=JobStatus.RUNNING,
        text_a=job.text_a,
        text_b=job.text_b,
        item_count=2,
        created_by=author,
    )
    for label in Label.objects.filter(job=job):
        Label.objects.create(job=again, item=label.item, side=label.side, label=label.label, p1=0.5)

    assert maybe_finish_job(again.pk)

    statuses = sorted(again.review_tasks.values_list("status", "carried_over"))
    assert statuses == [(ReviewStatus.OPEN, False), (ReviewStatus.RESOLVED, True)]


# --- bounded reads -------------------------------------------------------------------------------


def test_counts_stop_at_the_cap(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 5)
    counts = queue_counts(QueueFilter(job=job), cap=3)
    assert counts.open == 4 and counts.open_over_cap and counts.total_over_cap
    assert not queue_counts(QueueFilter(job=job), cap=5).open_over_cap


def test_counts_over_the_cap_are_not_read_again_for_a_few_seconds(
    author: Any, reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 5)
    scope = QueueFilter(job=job)
    assert queue_counts(scope, cap=3).open_over_cap
    with CaptureQueriesContext(connection) as queries:
        again = queue_counts(scope, cap=3)
    assert again.open_over_cap and again.claimed == 0
    sql = queries.captured_queries[0]["sql"]
    assert sql.count("AS capped_") == 4 and "'open'" not in sql  # open was not read again
    # Under the cap, every count is exact at once.
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None
    submit_decision(task=task, reviewer=reviewer, label="1", wording="a")
    assert queue_counts(scope, cap=10).open == 4
    assert queue_counts(scope, cap=10).resolved == 1


def test_queue_page_shows_capped_counts(settings: Any, author: Any, reviewer: Any) -> None:
    settings.COPE_QUEUE_COUNT_CAP = 2
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 5)
    html = client_for(reviewer).get(reverse("labeling:queue")).content.decode()
    assert "2+ open" in html and "counts stop at 2" in html


def _plan(sql: str, params: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table would be scanned anyway
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_earlier_decision_lookup_and_claim_use_indexes(
    author: Any, reviewer: Any, django_user_model: Any
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's query plans")
    long_text = "a long content " * 10
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=[long_text, "other"])
    task = claim_next_task(reviewer=reviewer)
    with CaptureQueriesContext(connection) as queries:
        earlier_decisions(task)
    item_query = next(q["sql"] for q in queries.captured_queries if "SUBSTRING" in q["sql"])
    plan = _plan(item_query, None)
    assert "item_text_prefix" in plan and "content_hash" in plan
    # Each filter's claim is one statement that walks a partial index holding only open tasks
    # (which one is the planner's choice on a table this small, and its statistics are what
    # earlier tests left; the next test checks the choice on a realistic queue), never a walk
    # over every task ever made.
    for n, scope in enumerate(({"job": task.job}, {"policy": task.policy}, {})):
        other = django_user_model.objects.create_user(f"claims_{n}")  # holds nothing yet
        with CaptureQueriesContext(connection) as queries:
            claim_next_task(reviewer=other, **scope)
        claim_sql = [q["sql"] for q in queries.captured_queries if "SKIP LOCKED" in q["sql"]]
        assert len(claim_sql) == 1 and claim_sql[0].startswith("UPDATE"), claim_sql
        plan = _plan(claim_sql[0], None)
        assert any(f"review_open_{i}" in plan for i in ("job", "policy", "id")), (scope, plan)


def _tasks(job: Job, count: int, status: str) -> None:
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
        )
        for item in items
    )


def test_a_claim_in_a_filter_starts_at_the_filters_own_open_tasks(
    author: Any, reviewer: Any
) -> None:
    """A policy's open tasks come in runs of ids, one run per job, and every policy's jobs are
    interleaved in time. Ordered by id, the planner walks the whole queue's open tasks from the
    oldest, filtering (it takes each policy's tasks to be spread evenly): here 900 of other
    policies' before the first of ours. The claim must start on the index that fits the
    filter."""
    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's query plans")
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
        with CaptureQueriesContext(connection) as queries:
            task = claim_next_task(reviewer=reviewer, **scope)
        assert task is not None and task.job_id == ours.pk
        claim = next(q["sql"] for q in queries.captured_queries if "SKIP LOCKED" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {claim}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert index in plan and "review_open_id" not in plan, plan
        submit_decision(task=task, reviewer=reviewer, label="1", wording="a")


def test_the_card_never_joins_the_large_tables(author: Any, reviewer: Any) -> None:
    # On PostgreSQL a join of tasks, items or decisions is planned by probing the ends of their
    # indexes, milliseconds per query once the tables hold dead rows: the card reads each large
    # table by key instead.
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["same words", "same words"])
    first = claim_next_task(reviewer=reviewer)
    assert first is not None
    submit_decision(task=first, reviewer=reviewer, label="1", wording="a")
    large = ("labeling_reviewtask", "labeling_item", "labeling_decision", "labeling_label")
    with CaptureQueriesContext(connection) as queries:
        task = claim_next_task(reviewer=reviewer)
        assert task is not None
        earlier = earlier_decisions(task)
    assert earlier and earlier[0].task.item.text == "same words"
    assert earlier[0].task.job.version.policy == task.policy
    for query in queries.captured_queries:
        tables = [t for t in large if f'"{t}"' in query["sql"]]
        assert len(tables) <= 1 or "JOIN" not in query["sql"], query["sql"]


def test_long_content_is_cut_on_the_card_and_whole_on_demand(author: Any, reviewer: Any) -> None:
    text = "word " * 3000 + "THE-END"
    make_job(author=author, mismatches=[(1, 0.9, 0.1)], texts=[text])
    client = client_for(reviewer)
    html = client.get(reverse("labeling:queue")).content.decode()
    task = ReviewTask.objects.get()
    assert "THE-END" not in html and "15007 characters long" in html
    full = client.get(reverse("labeling:review_full", args=[task.pk])).content.decode()
    assert "THE-END" in full


def test_wording_diff_of_a_huge_rewrite_is_bounded() -> None:
    lines = [f"Clause {i}: content that attacks a protected group number {i}." for i in range(2000)]
    twin = [f"Rule {i}: material attacking protected group {i}, reworded." for i in range(2000)]
    diff = wording_diff("\n".join(lines), "\n".join(twin))
    assert len(diff.html) < MAX_CHARS * 1.2
    assert diff.omitted_lines > 0 and not diff.complete
    small = wording_diff("One <b>rule</b>.\nSame.\n", "One <i>rule</i>.\nSame.\n")
    assert small.complete and "&lt;i&gt;rule&lt;/i&gt;" in small.html and "<i>" not in small.html


def test_card_says_what_the_diff_left_out(author: Any, reviewer: Any) -> None:
    policy = make_policy(author)
    text = POLICY_TEXT + "".join(f"\nClause {i} forbids insults of kind {i}." for i in range(3000))
    twin = TWIN_TEXT + "".join(
        f"\nRule {i} bans insults of sort {i}, reworded." for i in range(3000)
    )
    version = make_version(policy, author, text)
    version.twin_text = twin
    version.save()
    make_job(author=author, version=version, mismatches=[(1, 0.9, 0.1)])
    response = client_for(reviewer).get(reverse("labeling:queue"), **HTMX)
    html = response.content.decode()
    assert "more changed lines not shown" in html and "Both whole texts" in html
    assert len(response.content) < 120_000


# --- review notes, paged ------------------------------------------------------------------


def test_review_notes_are_paged_by_clause(author: Any, reviewer: Any) -> None:
    groups = NOTES_GROUPS_PER_PAGE + 2
    job = make_job(
        author=author,
        mismatches=[(1, 0.9, 0.1)] * (groups + NOTES_SAMPLES_PER_GROUP + 2),
        texts=[f"content {i}" for i in range(groups + NOTES_SAMPLES_PER_GROUP + 2)],
    )
    quotes = ["the popular clause"] * (NOTES_SAMPLES_PER_GROUP + 3) + [
        f"clause {i:02d}" for i in range(groups - 1)
    ]
    for quote in quotes:
        decide(claim_next_task(reviewer=reviewer, job=job), reviewer, quote=quote, note=quote)

    first = review_notes(job)
    assert first.decided == len(quotes) and first.page.paginator.num_pages == 2
    assert len(first.groups) == NOTES_GROUPS_PER_PAGE
    popular = first.groups[0]
    assert (popular.quote, popular.count) == ("the popular clause", NOTES_SAMPLES_PER_GROUP + 3)
    assert len(popular.decisions) == NOTES_SAMPLES_PER_GROUP and popular.more == 3
    assert [g.quote for g in review_notes(job, page=2).groups] == ["clause 19", "clause 20"]
    opened = review_notes(job, clause="THE Popular clause")
    assert opened.clause.count == NOTES_SAMPLES_PER_GROUP + 3
    assert len(opened.clause.decisions) == NOTES_SAMPLES_PER_GROUP + 3


def test_review_notes_page_queries_do_not_grow(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 30)
    for i in range(4):
        decide(claim_next_task(reviewer=reviewer, job=job), reviewer, quote=f"q{i}")
    client = client_for(author)
    url = reverse("labeling:review_notes", args=[job.pk])
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for i in range(20):
        decide(claim_next_task(reviewer=reviewer, job=job), reviewer, quote=f"q{i % 7}")
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    assert response.status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)


def test_review_notes_views_page_and_open_a_clause(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 6)
    for _ in range(5):
        decide(claim_next_task(reviewer=reviewer, job=job), reviewer, quote="Bad & <worse>")
    client = client_for(author)
    url = reverse("labeling:review_notes", args=[job.pk])
    html = client.get(url).content.decode()
    assert "All 5 decisions quoting this" in html and "clause=bad+%26+%3Cworse%3E" in html
    fragment = client.get(url, {"clause": "bad & <worse>"}, **HTMX).content.decode()
    assert "<html" not in fragment and "All clauses" in fragment
    assert fragment.count('class="note-entry"') == 5 and "<worse>" not in fragment
    assert client.get(url, {"page": "x"}).status_code == 200  # a bad page is page 1


# --- policy list ---------------------------------------------------------------------------------


def _policy_list_queries(user: Any) -> int:
    client = client_for(user)
    client.get(reverse("policies:list"))  # session, permissions cached
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("policies:list")).status_code == 200
    return len(queries.captured_queries)


def test_policy_list_queries_do_not_grow_with_versions_and_jobs(
    author: Any, django_assert_max_num_queries: Any
) -> None:
    policy = make_policy(author, "One")
    version = make_version(policy, author)
    make_job(author=author, version=version, stats={"p_o": 0.5, "n": 2})
    baseline = _policy_list_queries(author)
    for name in ("Two", "Three"):
        other = make_policy(author, name)
        for _ in range(4):
            v = make_version(other, author, POLICY_TEXT + f"\n{name} {other.versions.count()}\n")
            for _ in range(3):
                make_job(author=author, version=v, stats={"p_o": 0.9, "n": 2})
        make_version(other, author, POLICY_TEXT + "\nno jobs yet\n")
    client = client_for(author)
    with django_assert_max_num_queries(baseline):
        html = client.get(reverse("policies:list")).content.decode()
    assert html.count("v5") >= 2  # each many-version policy shows its latest version


def test_policy_list_figure_skips_jobs_without_an_agreement(author: Any, admin_user: Any) -> None:
    policy = make_policy(author, "Figures")
    v1 = make_version(policy, author)
    make_job(author=author, version=v1, stats={"p_o": 0.8, "n": 4})
    v2 = make_version(policy, author, POLICY_TEXT + "\nv2\n")
    make_job(author=author, version=v2, stats={"p_o": None, "n": 0})
    make_job(author=author, version=v2, stats={})
    row = next(r for r in policy_services.summarize_policies() if r.policy.pk == policy.pk)
    assert row.agreement_version == 1 and row.agreement["p_o"] == 0.8
    assert row.status == "in review" and row.latest == v2


def test_submit_without_reuse_records_no_provenance(author: Any, reviewer: Any) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    task = claim_next_task(reviewer=reviewer)
    decision = submit_decision(task=task, reviewer=reviewer, label="1", wording="a")
    assert decision.carried_from is None


def test_reuse_button_posts_only_the_earlier_decision(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    earlier = decide(claim_next_task(reviewer=reviewer), reviewer, label="u", quote="q", note="n")
    again = rerun(job, author, text_a=POLICY_TEXT + "\nchanged\n")
    client = client_for(reviewer)
    html = client.get(reverse("labeling:queue"), {"job": again.pk}, **HTMX).content.decode()
    task = again.review_tasks.get()
    assert 'id="reuse-form"' in html and html.count('name="label"') == 3  # the radios only

    response = client.post(
        reverse("labeling:review_submit", args=[task.pk]) + f"?job={again.pk}",
        {"reused": earlier.pk},
        **HTMX,
    )

    assert response.status_code == 200 and "All mismatches reviewed" in response.content.decode()
    reused = Decision.objects.get(task=task)
    assert (reused.label, reused.wording, reused.quote, reused.note) == ("u", "a", "q", "n")
    assert reused.carried_from == earlier
