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

from labeling.jobs.results import maybe_finish_job
from labeling.models import (
    Decision,
    GoldChange,
    GoldLabel,
    Job,
    JobStatus,
    Label,
    ReviewStatus,
    ReviewTask,
)
from labeling.review.carry_over import carry_over_decisions
from labeling.review.claim import QueueFilter, claim_next_task
from labeling.review.counts import queue_counts
from labeling.review.decisions import submit_decision
from labeling.review.diff import MAX_CHARS, wording_diff
from labeling.review.earlier import earlier_decisions, reusable_decision
from labeling.review.notes import NOTES_GROUPS_PER_PAGE, NOTES_SAMPLES_PER_GROUP, review_notes
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


def test_carry_over_copies_the_newest_decision_on_the_content(author: Any, reviewer: Any) -> None:
    # The same content twice in one job: decided 0, then 1. A rerun gets the newer answer.
    job = make_job(
        author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["the same words", "the same words"]
    )
    decide(claim_next_task(reviewer=reviewer, job=job), reviewer, label="0")
    decide(claim_next_task(reviewer=reviewer, job=job), reviewer, label="1", note="second look")
    again = rerun(job, author)

    assert carry_over_decisions(job_id=again.pk) == 2

    labels = {(t.decision.label, t.decision.note) for t in tasks_of(again)}
    assert labels == {("1", "second look")}


@pytest.mark.parametrize("returning", [True, False])
def test_carry_over_with_or_without_keys_returned_by_bulk_insert(
    author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    # A database that cannot return the new rows' keys: the carried decisions' keys are read.
    features = type(connection.features)
    monkeypatch.setattr(features, "can_return_rows_from_bulk_insert", returning)
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
    reusable = reusable_decision(task)
    assert reusable is not None and reusable.decision == earlier
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


def test_a_decision_carried_to_a_rerun_of_its_items_reads_their_gold_once(
    author: Any, reviewer: Any
) -> None:
    """The rerun labels the same items: the decision has just written their gold row, so the
    carry-over knows it holds reviewed gold (nothing to write, nothing to record) without
    reading it again."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    again = rerun(job, author)
    task = claim_next_task(reviewer=reviewer, job=job)
    with CaptureQueriesContext(connection) as queries:
        decide(task, reviewer, label="0")
    assert again.review_tasks.get().carried_over
    gold_reads = [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT") and '"labeling_goldlabel"' in q["sql"]
    ]
    assert len(gold_reads) == 1, gold_reads
    assert GoldLabel.objects.get(item=task.item_id).label == "0"
    assert GoldChange.objects.filter(item=task.item_id).count() == 1  # the decision's own


def test_a_decision_locks_its_item_alone_and_reads_items_unsorted(
    author: Any, reviewer: Any
) -> None:
    """The decision's statements never join the sample sets: ``Item``'s default ordering would,
    and ``FOR UPDATE`` would then lock the set's row too, so every decision on a set would wait
    for the others (PostgreSQL), and the rerun's items would be sorted by set (SQLite: inside
    the write lock)."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    again = rerun(job, author)
    task = claim_next_task(reviewer=reviewer, job=job)
    with CaptureQueriesContext(connection) as queries:
        decide(task, reviewer, label="0")
    assert again.review_tasks.get().carried_over  # the carry-over's reads ran
    joined = [q["sql"] for q in queries if "labeling_sampleset" in q["sql"]]
    assert joined == []


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
    counted = [q["sql"] for q in queries.captured_queries]  # the memo is in-process: no query
    # One statement for the counts still read; open (over the cap) is not among them.
    assert len(counted) == 1 and "'open'" not in counted[0]
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


def test_long_content_is_cut_on_the_card_and_whole_on_demand(author: Any, reviewer: Any) -> None:
    text = "word " * 3000 + "THE-END"
    make_job(author=author, mismatches=[(1, 0.9, 0.1)], texts=[text])
    client = client_for(reviewer)
    html = client.get(reverse("labeling:queue"), {"start": 1}).content.decode()
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
    policy = make_policy(author, "Figures", min_sample_size=4)
    v1 = make_version(policy, author)
    make_job(author=author, version=v1, stats={"p_o": 0.8, "n": 4})
    v2 = make_version(policy, author, POLICY_TEXT + "\nv2\n")
    make_job(author=author, version=v2, stats={"p_o": None, "n": 0})
    make_job(author=author, version=v2, stats={})
    row = next(r for r in policy_services.summarize_policies() if r.policy.pk == policy.pk)
    assert row.figure is not None and row.figure.version_number == 1
    assert row.figure.stats["p_o"] == 0.8
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
