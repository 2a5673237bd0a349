"""The mismatch review queue as services: claiming, deciding, skipping, filters, notes.

The factories here are shared by the other review and finalize tests.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labeling.models import (
    Decision,
    GoldLabel,
    Item,
    Job,
    JobStatus,
    Label,
    ReviewStatus,
    ReviewTask,
    SampleSet,
)
from labeling.review import claim
from labeling.review.claim import (
    QueueFilter,
    ReviewError,
    claim_next_task,
    skip_task,
    unskip_tasks,
)
from labeling.review.counts import queue_counts
from labeling.review.decisions import submit_decision
from labeling.review.earlier import earlier_decisions
from labeling.review.notes import review_notes
from policies.models import Policy, Version
from tests.conftest import POLICY_TEXT, TWIN_TEXT


def make_policy(author: Any, name: str = "", **fields: Any) -> Policy:
    name = name or f"Harassment — strict #{Policy.objects.count() + 1}"
    return Policy.objects.create(name=name, created_by=author, **fields)


def make_version(policy: Policy, author: Any, text: str = POLICY_TEXT) -> Version:
    number = policy.versions.count() + 1
    return Version.objects.create(
        policy=policy, number=number, text=text, twin_text=TWIN_TEXT, author=author
    )


def make_job(
    *,
    author: Any,
    version: Version | None = None,
    mismatches: list[tuple[int, float, float]] | None = None,
    texts: list[str] | None = None,
    agreed: int = 0,
    status: str = JobStatus.SUCCEEDED,
    stats: dict[str, Any] | None = None,
    sample_set: SampleSet | None = None,
) -> Job:
    """A finished job whose mismatches are review tasks, oldest first.

    ``mismatches`` holds (label under A, p1 under A, p1 under B); B's label is the other one.
    ``agreed`` items get the same label on both sides and no task.
    """
    if version is None:
        version = make_version(make_policy(author), author)
    mismatches = mismatches if mismatches is not None else [(1, 0.8, 0.3), (0, 0.4, 0.6)]
    texts = texts or [f"mismatching content number {i}" for i in range(len(mismatches))]
    if sample_set is None:
        sample_set = SampleSet.objects.create(
            name=f"sample {SampleSet.objects.count()}", created_by=author
        )
    base_row = sample_set.items.count()
    n = len(mismatches) + agreed
    job = Job.objects.create(
        version=version,
        sample_set=sample_set,
        status=status,
        text_a=version.text,
        text_b=version.twin_text,
        item_count=n,
        stats=stats if stats is not None else {"n": n, "p_o": agreed / n if n else 0},
        created_by=author,
        finished_at=timezone.now() if status == JobStatus.SUCCEEDED else None,
    )
    for i, ((label_a, p1_a, p1_b), text) in enumerate(zip(mismatches, texts, strict=False)):
        item = make_item(sample_set, text, base_row + i)
        Label.objects.create(job=job, item=item, side="A", label=label_a, p1=p1_a)
        Label.objects.create(job=job, item=item, side="B", label=1 - label_a, p1=p1_b)
        ReviewTask.objects.create(
            job=job,
            item=item,
            policy=version.policy,
            label_a=label_a,
            label_b=1 - label_a,
            p1_a=p1_a,
            p1_b=p1_b,
        )
    for i in range(agreed):
        item = make_item(sample_set, f"agreed content {i}", base_row + len(mismatches) + i)
        Label.objects.create(job=job, item=item, side="A", label=0, p1=0.1)
        Label.objects.create(job=job, item=item, side="B", label=0, p1=0.2)
    return job


def make_item(sample_set: SampleSet, text: str, row: int) -> Item:
    digest = hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()
    return Item.objects.create(
        sample_set=sample_set,
        external_id=f"ext-{sample_set.pk}-{row}",
        text=text,
        content_hash=digest,
        row_number=row,
    )


def tasks_of(job: Job) -> list[ReviewTask]:
    return list(job.review_tasks.order_by("id"))


def decide(task: ReviewTask, reviewer: Any, label: str = "1", wording: str = "a", **kw: Any):
    return submit_decision(task=task, reviewer=reviewer, label=label, wording=wording, **kw)


# --- claiming -------------------------------------------------------------------------------


def test_claim_gives_the_oldest_open_task(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7), (1, 0.6, 0.4)])
    first, second, _third = tasks_of(job)
    first.status = ReviewStatus.RESOLVED
    first.save()

    task = claim_next_task(reviewer=reviewer)

    assert task is not None and task.pk == second.pk
    second.refresh_from_db()
    assert second.status == ReviewStatus.CLAIMED
    assert second.claimed_by == reviewer
    assert second.claim_expires_at > timezone.now() + timedelta(minutes=10)


def test_two_reviewers_never_get_the_same_task(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 3, texts=["x", "y", "z"])

    mine = claim_next_task(reviewer=reviewer)
    theirs = claim_next_task(reviewer=second_reviewer)

    assert mine is not None and theirs is not None
    assert mine.pk != theirs.pk


def test_a_task_taken_between_pick_and_update_stays_with_its_taker(
    author: Any, reviewer: Any, second_reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's guarantee is its conditional update: a row that stopped being claimable
    after it was picked is not taken, and the next one is. Here another reviewer claims the
    picked row in between, every time, on both databases. (On PostgreSQL the pick's row lock
    keeps other connections out, so the other claim runs on the same connection: the one way
    the row can change there between pick and update.)"""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 2, texts=["x", "y"])
    first, second = tasks_of(job)
    real_pick = claim._pick
    theirs: list[ReviewTask | None] = []

    def pick_then_lose_it(*args: Any, **kwargs: Any) -> ReviewTask | None:
        picked = real_pick(*args, **kwargs)
        if not theirs:  # once: the other reviewer's claim, while ours is between its two steps
            theirs.append(None)
            theirs[0] = claim_next_task(reviewer=second_reviewer)
        return picked

    monkeypatch.setattr(claim, "_pick", pick_then_lose_it)
    mine = claim_next_task(reviewer=reviewer)

    assert theirs[0] is not None and theirs[0].pk == first.pk
    assert mine is not None and mine.pk == second.pk
    first.refresh_from_db()
    assert first.claimed_by == second_reviewer


def test_reviewer_gets_their_still_valid_claim_back_first(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    first = claim_next_task(reviewer=reviewer)
    again = claim_next_task(reviewer=reviewer)

    assert first is not None and again is not None and again.pk == first.pk
    assert job.review_tasks.filter(status=ReviewStatus.CLAIMED).count() == 1


def test_expired_claim_is_reclaimable(author: Any, reviewer: Any, second_reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    abandoned = claim_next_task(reviewer=reviewer)
    assert abandoned is not None
    assert claim_next_task(reviewer=second_reviewer) is None
    ReviewTask.objects.filter(pk=abandoned.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )

    task = claim_next_task(reviewer=second_reviewer)

    assert task is not None and task.pk == abandoned.pk
    assert task.claimed_by == second_reviewer
    with pytest.raises(ReviewError):
        decide(tasks_of(job)[0], reviewer)


def _expired_picks(queries: list[dict[str, Any]]) -> list[str]:
    """The statements that looked among abandoned claims (status claimed, expiry before now)."""
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT")
        and '"claim_expires_at" <' in q["sql"]
        and "'claimed'" in q["sql"]
        and "COUNT(" not in q["sql"]
        and "FOR NO KEY UPDATE" not in q["sql"]  # the reviewer's lock, which asks EXISTS
    ]


def test_a_claim_looks_among_abandoned_claims_only_when_the_filter_has_one(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    """On PostgreSQL the reviewer's lock statement also says whether the filter holds an
    abandoned claim; without one the claim goes straight to open work (one round trip fewer).
    With one, it is picked up first."""
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 3, texts=["x", "y", "z"])
    first, second, _third = tasks_of(job)
    with CaptureQueriesContext(connection) as quiet:
        mine = claim_next_task(reviewer=reviewer)
    assert mine is not None and mine.pk == first.pk
    looked = _expired_picks(quiet.captured_queries)
    if connection.vendor == "postgresql":
        lock = [q["sql"] for q in quiet.captured_queries if "FOR NO KEY UPDATE" in q["sql"]]
        assert looked == [] and "EXISTS" in lock[0]
    else:
        assert len(looked) == 1  # SQLite asks: its round trips cost nothing
    ReviewTask.objects.filter(pk=first.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with CaptureQueriesContext(connection) as abandoned:
        theirs = claim_next_task(reviewer=second_reviewer)
    assert theirs is not None and theirs.pk == first.pk  # before the open ``second``
    assert len(_expired_picks(abandoned.captured_queries)) == 1


def test_queue_is_empty_when_everything_is_resolved(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    ReviewTask.objects.filter(job=job).update(status=ReviewStatus.RESOLVED)

    assert claim_next_task(reviewer=reviewer) is None


# --- deciding -------------------------------------------------------------------------------


def test_only_the_claimant_can_submit(author: Any, reviewer: Any, second_reviewer: Any) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    task = claim_next_task(reviewer=reviewer)
    assert task is not None

    with pytest.raises(ReviewError):
        decide(task, second_reviewer)
    assert not Decision.objects.exists()

    decide(task, reviewer)
    with pytest.raises(ReviewError):  # resolved: not a second decision
        decide(task, reviewer)
    assert Decision.objects.count() == 1


def test_an_expired_claim_cannot_submit(author: Any, reviewer: Any) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    task = claim_next_task(reviewer=reviewer)
    assert task is not None
    ReviewTask.objects.filter(pk=task.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )

    with pytest.raises(ReviewError):
        decide(task, reviewer)


def test_an_unclaimed_task_cannot_be_decided(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])

    with pytest.raises(ReviewError):
        decide(tasks_of(job)[0], reviewer)


def test_decision_resolves_the_task_and_records_a_gold_label(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    task = claim_next_task(reviewer=reviewer)
    assert task is not None

    decision = decide(task, reviewer, label="0", wording="b", quote="  Insults  aimed ", note="x")

    task.refresh_from_db()
    assert task.status == ReviewStatus.RESOLVED and task.resolved_at is not None
    assert (decision.label, decision.wording, decision.quote, decision.note) == (
        "0",
        "b",
        "Insults aimed",  # whitespace normalised: the notes group clauses on it
        "x",
    )
    gold = GoldLabel.objects.get(policy=job.version.policy, item=task.item)
    assert (gold.label, gold.decision, gold.decided_by) == ("0", decision, reviewer)


def test_a_later_decision_updates_the_gold_label(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    first_job = make_job(author=author, mismatches=[(1, 0.9, 0.1)], texts=["same item"])
    # Another text A: under the same two texts the second task would be carried over instead.
    version2 = make_version(first_job.version.policy, author, POLICY_TEXT + "\nEdited.\n")
    second_job = Job.objects.create(
        version=version2,
        sample_set=first_job.sample_set,
        status=JobStatus.SUCCEEDED,
        text_a=version2.text,
        text_b=version2.twin_text,
        created_by=author,
    )
    item = first_job.review_tasks.get().item
    ReviewTask.objects.create(
        job=second_job, item=item, policy=version2.policy, label_a=0, label_b=1, p1_a=0.4, p1_b=0.6
    )

    decide(claim_next_task(reviewer=reviewer, job=first_job), reviewer, label="1")
    later = decide(claim_next_task(reviewer=second_reviewer), second_reviewer, label="u")

    gold = GoldLabel.objects.get(policy=first_job.version.policy, item=item)
    assert GoldLabel.objects.count() == 1
    assert (gold.label, gold.decision, gold.decided_by) == ("u", later, second_reviewer)


def test_unknown_label_is_refused(author: Any, reviewer: Any) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    task = claim_next_task(reviewer=reviewer)
    assert task is not None
    with pytest.raises(ValueError):
        decide(task, reviewer, label="2")


# --- skipping -------------------------------------------------------------------------------


def test_skipped_task_is_not_offered_again_to_that_reviewer(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    first, second = tasks_of(job)
    task = claim_next_task(reviewer=reviewer)
    assert task is not None and task.pk == first.pk

    skip_task(task=task, reviewer=reviewer)

    first.refresh_from_db()
    assert first.status == ReviewStatus.OPEN and first.claimed_by is None
    assert first.skipped_by == [reviewer.pk]
    following = claim_next_task(reviewer=reviewer)
    assert following is not None and following.pk == second.pk
    decide(following, reviewer)
    assert claim_next_task(reviewer=reviewer) is None
    other = claim_next_task(reviewer=second_reviewer)
    assert other is not None and other.pk == first.pk
    # The claimed row comes back as the ORM reads it.
    assert other.skipped_by == [reviewer.pk] and other.claimed_by_id == second_reviewer.pk
    assert other.claim_expires_at is not None and other.claim_expires_at > timezone.now()


def test_a_reviewer_can_bring_back_what_they_skipped(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    first, _second = tasks_of(job)
    ReviewTask.objects.filter(pk=first.pk).update(skipped_by=[reviewer.pk, second_reviewer.pk])
    decide(claim_next_task(reviewer=reviewer), reviewer)
    assert claim_next_task(reviewer=reviewer) is None

    assert unskip_tasks(reviewer=reviewer, scope=QueueFilter(job=job)) == 1

    first.refresh_from_db()
    assert first.skipped_by == [second_reviewer.pk]  # only this reviewer's skip is undone
    again = claim_next_task(reviewer=reviewer)
    assert again is not None and again.pk == first.pk
    assert unskip_tasks(reviewer=reviewer, scope=QueueFilter(job=job)) == 0


def test_only_the_claimant_can_skip(author: Any, reviewer: Any, second_reviewer: Any) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    task = claim_next_task(reviewer=reviewer)
    assert task is not None
    with pytest.raises(ReviewError):
        skip_task(task=task, reviewer=second_reviewer)


def test_skipped_tasks_are_paged_past(author: Any, reviewer: Any) -> None:
    # More skipped tasks than one page of candidates: the claim must look further.
    job = make_job(
        author=author, mismatches=[(1, 0.9, 0.1)] * 60, texts=[f"t{i}" for i in range(60)]
    )
    ids = [t.pk for t in tasks_of(job)]
    ReviewTask.objects.filter(pk__in=ids[:55]).update(skipped_by=[reviewer.pk, 999])

    task = claim_next_task(reviewer=reviewer)

    assert task is not None and task.pk == ids[55]


# --- filters --------------------------------------------------------------------------------


def test_filter_by_side_that_said_1(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7), (1, 0.6, 0.4)])
    a1, b1, _a1_again = tasks_of(job)

    by_b = claim_next_task(reviewer=reviewer, side_said_1="B")
    assert by_b is not None and by_b.pk == b1.pk and by_b.label_b == 1
    decide(by_b, reviewer)
    by_a = claim_next_task(reviewer=reviewer, side_said_1="A")
    assert by_a is not None and by_a.pk == a1.pk
    with pytest.raises(ValueError):
        claim_next_task(reviewer=reviewer, side_said_1="C")


def test_filter_by_probability_margin(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.45, 0.55), (1, 0.7, 0.3)])
    _wide, close, middle = tasks_of(job)

    task = claim_next_task(reviewer=reviewer, max_margin=0.15)
    assert task is not None and task.pk == close.pk
    decide(task, reviewer)
    task = claim_next_task(reviewer=reviewer, max_margin=0.4)
    assert task is not None and task.pk == middle.pk
    decide(task, reviewer)
    assert claim_next_task(reviewer=reviewer, max_margin=0.4) is None


def test_filter_by_job_and_policy(author: Any, reviewer: Any) -> None:
    older = make_job(author=author, mismatches=[(1, 0.9, 0.1)])
    other_policy = make_policy(author, name="Spam")
    newer = make_job(author=author, version=make_version(other_policy, author))

    task = claim_next_task(reviewer=reviewer, job=newer)
    assert task is not None and task.job_id == newer.pk
    decide(task, reviewer)
    task = claim_next_task(reviewer=reviewer, policy=older.version.policy)
    assert task is not None and task.job_id == older.pk


def test_claim_outside_the_new_filter_goes_back_to_the_queue(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    a1, b1 = tasks_of(job)
    assert claim_next_task(reviewer=reviewer).pk == a1.pk  # type: ignore[union-attr]

    task = claim_next_task(reviewer=reviewer, side_said_1="B")

    assert task is not None and task.pk == b1.pk
    a1.refresh_from_db()
    assert a1.status == ReviewStatus.OPEN and a1.claimed_by is None


def test_queue_counts_follow_the_filter(author: Any, reviewer: Any, second_reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7), (1, 0.6, 0.4)])
    decide(claim_next_task(reviewer=reviewer), reviewer)
    claim_next_task(reviewer=second_reviewer)
    expired = claim_next_task(reviewer=reviewer)
    assert expired is not None
    ReviewTask.objects.filter(pk=expired.pk).update(
        claim_expires_at=timezone.now() - timedelta(minutes=1)
    )

    counts = queue_counts(QueueFilter(job=job))
    assert (counts.open, counts.claimed, counts.resolved) == (1, 1, 1)
    counts = queue_counts(QueueFilter(side_said_1="B"))
    assert (counts.open, counts.claimed, counts.resolved, counts.total) == (0, 1, 0, 1)


# --- context for the reviewer ---------------------------------------------------------------


def test_earlier_decisions_on_the_same_content_are_found(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    long_start = "You are a worthless excuse for a human being and everybody at work knows it"
    first = make_job(author=author, mismatches=[(1, 0.9, 0.1)], texts=["Go   away, loser"])
    decide(claim_next_task(reviewer=reviewer), reviewer, note="insult, counts")
    near = make_job(author=author, mismatches=[(1, 0.9, 0.1)], texts=[long_start + "!!"])
    decide(claim_next_task(reviewer=reviewer), reviewer, note="near twin")
    other_policy = make_version(make_policy(author, name="Other"), author)
    later = make_job(
        author=author,
        version=other_policy,
        mismatches=[(0, 0.3, 0.6)] * 3,
        texts=["Go away, loser", long_start + ".", "unrelated"],
    )
    same, nearly, unrelated = tasks_of(later)

    assert [e.decision.note for e in earlier_decisions(same)] == ["insult, counts"]
    assert [e.decision.note for e in earlier_decisions(nearly)] == ["near twin"]
    assert earlier_decisions(unrelated) == []
    assert first.pk != near.pk
    # What the card shows is read at once; a job field not read is loaded when used, never a
    # blank default.
    shown = earlier_decisions(same)[0]
    assert str(shown.job.version) == f"{first.version.policy.name} v{first.version.number}"
    assert shown.decision.reviewer.get_username() == reviewer.get_username()
    assert shown.job.status == first.status and shown.job.text_a == first.text_a
    assert (shown.snippet, shown.policy_id) == ("Go   away, loser", first.version.policy_id)
    assert shown.content_hash == first.sample_set.items.get().content_hash
    held = claim_next_task(reviewer=second_reviewer, job=later)
    assert held is not None and held.job.sample_set_id == later.sample_set_id
    assert held.job.version.text == later.version.text and held.policy.name == "Other"


def test_review_notes_group_decisions_by_quoted_clause(author: Any, reviewer: Any) -> None:
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 4, texts=["a", "b", "c", "d"])
    decide(claim_next_task(reviewer=reviewer), reviewer, quote="quoted abuse", note="n1")
    decide(claim_next_task(reviewer=reviewer), reviewer, wording="b", note="no quote")
    decide(claim_next_task(reviewer=reviewer), reviewer, quote="Quoted   abuse ", note="n3")

    notes = review_notes(job)

    assert [(g.quote.casefold(), g.count) for g in notes.groups] == [("quoted abuse", 2), ("", 1)]
    assert [d.note for d in notes.groups[0].decisions] == ["n3", "n1"]  # newest first
    assert notes.decided == 3 and notes.open_tasks == 1


# --- real concurrency -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_reviewers_never_share_a_task(django_user_model: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks and real concurrent connections need PostgreSQL")
    author = django_user_model.objects.create_user("concurrent_author")
    reviewers = [django_user_model.objects.create_user(f"concurrent_{i}") for i in range(4)]
    job = make_job(
        author=author,
        mismatches=[(i % 2, 0.7, 0.3) for i in range(120)],
        texts=[f"content {i}" for i in range(120)],
    )
    claimed: dict[int, list[int]] = {r.pk: [] for r in reviewers}
    errors: list[BaseException] = []
    start = threading.Barrier(len(reviewers))

    def work(user: Any) -> None:
        try:
            start.wait()
            while (task := claim_next_task(reviewer=user)) is not None:
                claimed[user.pk].append(task.pk)
                submit_decision(task=task, reviewer=user, label="1", wording="a")
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(r,)) for r in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors
    every = [pk for pks in claimed.values() for pk in pks]
    assert len(every) == len(set(every)), "a task was handed to two reviewers"
    assert set(every) == {t.pk for t in tasks_of(job)}
    assert Decision.objects.count() == 120
    assert sum(1 for pks in claimed.values() if pks) > 1, "the reviewers did not overlap"
