"""One claim per reviewer, whatever the number of tabs and clicks, and a lost claim said as such.

The races are made deterministic: a hook runs the other request at the exact point where it
used to slip in (between reading the reviewer's claims and taking a task, or between reading a
claim and renewing it). Hooks run on the test's own connection, so they test the statements'
guarantee (the conditional updates), on both databases. The tests with real threads test the
lock that makes one reviewer's requests wait for each other; they need PostgreSQL (SQLite's
in-memory test database is shared between threads through table locks that fail instead of
waiting), and say so when skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.models import ReviewStatus, ReviewTask
from labeling.review import claim
from labeling.review.claim import claim_next, claim_next_task
from labeling.review.decisions import submit_decision
from tests.labeling.review.test_review import make_job, tasks_of

HTMX = {"HTTP_HX_REQUEST": "true"}


def claims_of(user: Any) -> list[int]:
    return list(
        ReviewTask.objects.filter(status=ReviewStatus.CLAIMED, claimed_by=user)
        .order_by("id")
        .values_list("id", flat=True)
    )


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def once_inside(monkeypatch: pytest.MonkeyPatch, name: str, other: Callable[[], Any]) -> list[Any]:
    """Patch ``claim.<name>`` so that its first call runs ``other`` right after the real one
    (the other request slipping in at that point); ``other``'s result is returned in a list."""
    real = getattr(claim, name)
    ran: list[Any] = []

    def hooked(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not ran:
            ran.append(None)
            ran[0] = other()
        return result

    monkeypatch.setattr(claim, name, hooked)
    return ran


def test_two_tabs_asking_at_once_share_one_claim(
    author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second tab asks while the first has found no claim and picked a task, not yet
    taken it: the take refuses a second claim, and the first tab shows the second's task."""
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 3, texts=["x", "y", "z"])
    other_tab = once_inside(monkeypatch, "_pick", lambda: claim_next_task(reviewer=reviewer))

    first_tab = claim_next_task(reviewer=reviewer)

    assert other_tab[0] is not None and first_tab is not None
    assert first_tab.pk == other_tab[0].pk
    assert first_tab.claimed_by == reviewer and first_tab.status == ReviewStatus.CLAIMED
    assert claims_of(reviewer) == [first_tab.pk]


def test_two_tabs_with_different_filters_share_one_claim(
    author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other tab reviews one job and claims its task while this tab (the whole queue) holds
    another job's task picked, not yet taken: the take refuses, because the reviewer holds a
    live claim now, and this tab shows that claim."""
    older = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["x", "y"])
    newer = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["z", "w"])
    other_tab = once_inside(
        monkeypatch, "_pick", lambda: claim_next_task(reviewer=reviewer, job=newer)
    )

    this_tab = claim_next_task(reviewer=reviewer)

    assert other_tab[0] is not None and other_tab[0].job_id == newer.pk
    assert this_tab is not None and this_tab.pk == other_tab[0].pk
    assert claims_of(reviewer) == [this_tab.pk]
    assert not ReviewTask.objects.filter(job=older, status=ReviewStatus.CLAIMED).exists()


def test_a_double_click_on_save_leaves_one_claim(
    author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two posts of the same decision: the second arrives while the first is claiming the next
    task. One decision, one claim, and both answers show the same next card."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 3, texts=["x", "y", "z"])
    first, second, _third = tasks_of(job)
    client = client_for(reviewer)
    assert claim_next_task(reviewer=reviewer) is not None
    url = reverse("labeling:review_submit", args=[first.pk]) + f"?job={job.pk}"
    save = {"label": "1", "wording": "a"}
    second_click = once_inside(monkeypatch, "_pick", lambda: client.post(url, save, **HTMX))

    first_click = client.post(url, save, **HTMX)

    assert claims_of(reviewer) == [second.pk]
    for response in (first_click, second_click[0]):
        assert f'data-task-id="{second.pk}"' in response.content.decode()
    assert "claim on this task has ended" in second_click[0].content.decode()
    assert ReviewTask.objects.get(pk=first.pk).status == ReviewStatus.RESOLVED


def test_an_unskip_racing_a_submit_reports_the_lost_claim(
    author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submit resolves the held task after the unskip read the reviewer's claims and
    before it renewed the claim: the renewal changes no row, the unskip says the claim ended
    and shows the next task, never the one just resolved."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 3, texts=["x", "y", "z"])
    first, second, _third = tasks_of(job)
    held = claim_next_task(reviewer=reviewer)
    assert held is not None and held.pk == first.pk
    submitted = once_inside(
        monkeypatch,
        "_claims_of",
        lambda: submit_decision(task=held, reviewer=reviewer, label="1", wording="a"),
    )

    response = client_for(reviewer).post(reverse("labeling:review_unskip"), **HTMX)

    body = response.content.decode()
    assert submitted and submitted[0].task_id == first.pk
    assert f'data-task-id="{first.pk}"' not in body
    assert f'data-task-id="{second.pk}"' in body
    assert f"Your claim on mismatch #{first.pk} ended" in body
    assert claims_of(reviewer) == [second.pk]


def test_a_lost_claim_is_reported_by_the_service(
    author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["x", "y"])
    first, second = tasks_of(job)
    held = claim_next_task(reviewer=reviewer)
    assert held is not None
    once_inside(
        monkeypatch,
        "_claims_of",
        lambda: ReviewTask.objects.filter(pk=held.pk).update(
            status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None
        ),
    )

    result = claim_next(reviewer=reviewer)

    assert result.lost == first.pk and "ended" in result.notice
    assert result.task is not None and result.task.claimed_by == reviewer
    assert len(claims_of(reviewer)) == 1


def test_a_renewed_claim_comes_back_with_no_notice(author: Any, reviewer: Any) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["x", "y"])
    held = claim_next(reviewer=reviewer)
    again = claim_next(reviewer=reviewer)
    assert held.task is not None and again.task is not None and again.task.pk == held.task.pk
    assert again.lost is None and again.notice == ""


def test_one_claim_per_reviewer_costs_no_statement(author: Any, reviewer: Any) -> None:
    """The claim's statements (savepoints aside), right after a decision and with the claim
    held. Before one claim per reviewer: PostgreSQL 6 and 6, SQLite 7 and 6 (SQLite reads a
    page of candidates, then the row). The reviewer's row lock is taken by the statement that
    reads their claims (PostgreSQL); the one-claim rule in the take adds none. That statement
    also says whether the filter has abandoned claims (none here), which spares PostgreSQL's
    pick among them: 5. SQLite reads the picked or held task with its item and job in one
    statement (PostgreSQL reads them by key, one table each): 5 and 4, from 7 and 6."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 3, texts=["x", "y", "z"])
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None
    submit_decision(task=task, reviewer=reviewer, label="1", wording="a")
    counts = []
    for _held in (False, True):
        with CaptureQueriesContext(connection) as queries:
            assert claim_next_task(reviewer=reviewer, job=job) is not None
        counts.append(
            sum(1 for q in queries.captured_queries if "SAVEPOINT" not in q["sql"].upper())
        )
    expected = [5, 6] if connection.vendor == "postgresql" else [5, 4]
    assert counts == expected


def test_a_submit_between_the_renewal_and_the_card_reports_the_claim_lost(
    author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another tab decides the held task right after this request renewed it and before the
    card is read (on SQLite the card is read after the renewal's transaction): the page never
    shows the decided task as held; it says the claim was lost and claims the next task."""
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["one", "two"])
    held = claim_next_task(reviewer=reviewer)
    assert held is not None
    real_load = claim.load_task
    submitted: list[Any] = []

    def submit_first(pk: int) -> ReviewTask:
        if not submitted:
            submitted.append(submit_decision(task=held, reviewer=reviewer, label="1", wording="a"))
        return real_load(pk)

    monkeypatch.setattr(claim, "load_task", submit_first)

    result = claim_next(reviewer=reviewer)

    assert submitted and submitted[0].task_id == held.pk
    assert result.lost == held.pk
    assert result.task is not None and result.task.pk != held.pk
    assert result.task.status == ReviewStatus.CLAIMED and result.task.claimed_by == reviewer
    assert claims_of(reviewer) == [result.task.pk]


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_a_claim_holds_the_writers_turn_only_for_its_writes(
    django_user_model: Any,
) -> None:
    """SQLite has one writer at a time for the whole database: there a claim's reads (the
    reviewer's claims, the pick, the card) run outside any transaction and each write (the take,
    the renewal) in a transaction of its own, so twenty reviewers' claims do not queue behind each
    other's reads. On PostgreSQL the whole claim is one transaction (its row locks are its own)."""
    author = django_user_model.objects.create_user("turn_author")
    reviewer = django_user_model.objects.create_user("turn_reviewer")
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["one", "two"])
    seen: list[tuple[str, bool]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql.split(None, 1)[0].upper(), connection.in_atomic_block))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        taken = claim_next_task(reviewer=reviewer)  # picked and taken
        renewed = claim_next_task(reviewer=reviewer)  # found and renewed
    assert taken is not None and renewed is not None and renewed.pk == taken.pk
    statements = [(verb, inside) for verb, inside in seen if verb != "BEGIN"]
    writes = [inside for verb, inside in statements if verb == "UPDATE"]
    reads = [inside for verb, inside in statements if verb == "SELECT"]
    assert len(writes) == 2 and all(writes)
    assert len(reads) >= 4
    if connection.vendor == "sqlite":
        assert not any(reads), statements
    else:
        assert all(reads), statements


# --- real concurrency (PostgreSQL) ------------------------------------------------------------


def _run_together(work: Callable[[int], Any], n: int) -> list[Any]:
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_of_one_reviewer_hold_one_claim(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three tabs (or clicks) of one reviewer ask for a task at once. Each pick waits for the
    other requests to reach their pick too (up to a second): without the lock on the
    reviewer's row all three pick and take a task each; with it the others wait for the first
    claim and renew it."""
    if connection.vendor != "postgresql":
        pytest.skip("real concurrent transactions and row locks need PostgreSQL")
    author = django_user_model.objects.create_user("tabs_author")
    reviewer = django_user_model.objects.create_user("tabs_reviewer")
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 6, texts=[f"c{i}" for i in range(6)])
    real_pick = claim._pick
    for _round in range(2):
        together = threading.Barrier(3, timeout=1.0)

        def pick_together(*args: Any, barrier: threading.Barrier = together, **kwargs: Any) -> Any:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass  # the others are waiting for the reviewer's lock: go on alone
            return real_pick(*args, **kwargs)

        monkeypatch.setattr(claim, "_pick", pick_together)
        tasks = _run_together(lambda _i: claim_next_task(reviewer=reviewer), 3)
        monkeypatch.setattr(claim, "_pick", real_pick)

        assert all(t is not None for t in tasks)
        assert len({t.pk for t in tasks}) == 1, [t.pk for t in tasks]
        assert claims_of(reviewer) == [tasks[0].pk]
        submit_decision(task=tasks[0], reviewer=reviewer, label="1", wording="a")


@pytest.mark.django_db(transaction=True)
def test_a_submit_racing_a_renewal_never_leaves_a_resolved_card(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unskip (or reload) renews the held claim while another tab submits that task. The
    submit is let in between the renewal and the card's read (given a second): the card the
    renewal returns is claimed, and the submit lands after it (on the locked row)."""
    if connection.vendor != "postgresql":
        pytest.skip("real concurrent transactions and row locks need PostgreSQL")
    author = django_user_model.objects.create_user("race_author")
    reviewer = django_user_model.objects.create_user("race_reviewer")
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["one", "two"])
    held = claim_next_task(reviewer=reviewer)
    assert held is not None
    submit_go, submitted = threading.Event(), threading.Event()
    real_load = claim.load_task

    def load_after_the_submit(pk: int) -> ReviewTask:
        submit_go.set()
        submitted.wait(timeout=1.0)
        return real_load(pk)

    monkeypatch.setattr(claim, "load_task", load_after_the_submit)

    def work(i: int) -> Any:
        if i == 0:
            return claim_next_task(reviewer=reviewer)
        submit_go.wait(timeout=10)
        decision = submit_decision(task=held, reviewer=reviewer, label="1", wording="a")
        submitted.set()
        return decision

    renewed, decision = _run_together(work, 2)

    assert renewed is not None and renewed.pk == held.pk
    assert renewed.status == ReviewStatus.CLAIMED and renewed.claimed_by_id == reviewer.pk
    assert decision.task_id == held.pk
