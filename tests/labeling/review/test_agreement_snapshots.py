"""Reviewer agreement read from a stored snapshot: the background refresh computes what the
pages show, every change path marks it out of date, a current snapshot is not computed again,
and the pages' queries do not grow with the votes (both databases)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling import tasks
from labeling.models import AgreementSnapshot, Decision, GoldChoice, ReviewTask, ReviewVote
from labeling.rater_agreement import rater_agreement
from labeling.review import snapshots
from labeling.review.corrections import edit_decision
from labeling.review.votes import adjudicate, awaiting_adjudication
from tests.labeling.review.overlap_factories import as_units, decide_offered, make_lead, task_ids
from tests.labeling.review.test_overlap import overlap_job

HTMX_POLL = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "team-agreement"}
FIRST = "100101101u10"
SECOND = "100100111u11"


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def figure(body: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}">([^<]*)<', body)
    assert match is not None, f"no {name} on the page"
    return match.group(1).strip()


def shown(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The refreshes handed to the broker (the real task is run by the test itself)."""
    calls: list[dict[str, Any]] = []

    def send_task(name: str, **options: Any) -> None:
        if name == snapshots.REFRESH_AGREEMENT_TASK:
            calls.append(options["kwargs"])

    monkeypatch.setattr(snapshots.celery_app, "send_task", send_task)
    return calls


@pytest.fixture
def voted(author: Any, reviewer: Any, second_reviewer: Any) -> Any:
    """A job with overlap 2 whose 12 mismatches two reviewers decided, some differently."""
    job = overlap_job(author, mismatches=[(i % 2, 0.9, 0.1) for i in range(12)])
    ids = task_ids(job)
    decide_offered(reviewer, job, dict(zip(ids, FIRST, strict=True)))
    decide_offered(second_reviewer, job, dict(zip(ids, SECOND, strict=True)))
    return job


def test_the_pages_show_what_the_refresh_computed(
    voted: Any, reviewer: Any, second_reviewer: Any, sent: list[dict[str, Any]]
) -> None:
    assert tasks.refresh_agreement(job_id=voted.pk) == 2  # the job's and its policy's
    expected = rater_agreement(as_units(voted), categories=len(GoldChoice.values))
    client = client_for(reviewer)
    policy_id = voted.version.policy_id

    pages = [
        client.get(reverse("labeling:job_review_team", args=[voted.pk])),
        client.get(reverse("labeling:policy_review_team", args=[policy_id])),
    ]

    for page in pages:
        body = page.content.decode()
        assert page.status_code == 200
        assert figure(body, "cohen") == shown(expected.cohen_kappa)
        assert figure(body, "alpha") == shown(expected.krippendorff_alpha)
        assert figure(body, "ac1") == shown(expected.gwet_ac1)
        assert figure(body, "percent") == shown(expected.percent)
        assert "As of" in body and "updating" not in body and "hx-trigger" not in body
        assert f'data-reviewer="{second_reviewer.username}"' in body
        awaiting = sum(1 for a, b in zip(FIRST, SECOND, strict=True) if a != b)
        assert f"{awaiting} awaiting adjudication" in body
    assert sent == []  # current snapshots ask for nothing


def test_every_change_path_marks_the_figures_stale_and_queues_a_refresh(
    voted: Any,
    reviewer: Any,
    admin_user: Any,
    sent: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    tasks.refresh_agreement(job_id=voted.pk)
    policy_id = voted.version.policy_id
    split = awaiting_adjudication().object_list[0]

    with django_capture_on_commit_callbacks(execute=True):
        adjudicate(task=split, lead=make_lead(), label="0", wording="a")
    assert sent == [{"job_id": voted.pk, "policy_id": None}]
    assert not snapshots.read_snapshot(policy_id=policy_id, job_id=voted.pk).current  # type: ignore[union-attr]
    assert not snapshots.read_snapshot(policy_id=policy_id).current  # type: ignore[union-attr]
    tasks.refresh_agreement(job_id=voted.pk)
    page = client_for(reviewer).get(reverse("labeling:job_review_team", args=[voted.pk]))
    assert "1 adjudicated" in page.content.decode()

    # An edit that changes a voted task's final label changes its reviewers' figures.
    decision = Decision.objects.get(task=split)
    with django_capture_on_commit_callbacks(execute=True):
        edit_decision(decision=decision, by=admin_user, label="1", wording="a")
    assert len(sent) == 2
    assert not snapshots.read_snapshot(policy_id=policy_id, job_id=voted.pk).current  # type: ignore[union-attr]
    # An edit of the wording alone changes no figure: nothing is queued.
    tasks.refresh_agreement(job_id=voted.pk)
    with django_capture_on_commit_callbacks(execute=True):
        edit_decision(decision=decision, by=admin_user, label="1", wording="b")
    assert len(sent) == 2


def test_a_stale_snapshot_says_updating_and_the_poll_gets_the_figures(
    author: Any,
    reviewer: Any,
    second_reviewer: Any,
    sent: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = overlap_job(author, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    first, second = task_ids(job)
    decide_offered(reviewer, job, {first: "1", second: "0"})
    tasks.refresh_agreement(job_id=job.pk)
    decide_offered(second_reviewer, job, {first: "1", second: "1"})  # not refreshed yet
    client = client_for(reviewer)
    url = reverse("labeling:policy_review_team", args=[job.version.policy_id])

    with django_capture_on_commit_callbacks(execute=True):
        stale = client.get(url).content.decode()
    assert "updating…" in stale and "As of" in stale and 'hx-trigger="every 2s"' in stale
    assert 'id="no-overlap"' in stale  # the stored figures: no mismatch had two votes yet
    assert sent == []  # the vote's own refresh is on its way: not asked again

    # That refresh was lost: past REFRESH_AGAIN_SECONDS the page asks once more, once.
    lately = timezone.now() - timedelta(seconds=snapshots.REFRESH_AGAIN_SECONDS + 1)
    AgreementSnapshot.objects.update(requested_at=lately)
    with django_capture_on_commit_callbacks(execute=True):
        assert "updating…" in client.get(url).content.decode()
        assert "updating…" in client.get(url).content.decode()
    assert sent == [{"job_id": None, "policy_id": job.version.policy_id}]
    tasks.refresh_agreement(**sent[0])
    poll = client.get(url, **HTMX_POLL)
    body = poll.content.decode()
    assert body.lstrip().startswith('<section class="card" id="team-agreement"')
    assert "updating" not in body and "hx-trigger" not in body
    assert figure(body, "percent") == "0.500"


def test_a_page_without_a_snapshot_asks_for_one(
    author: Any,
    reviewer: Any,
    sent: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = overlap_job(author)

    with django_capture_on_commit_callbacks(execute=True):
        body = client_for(reviewer).get(reverse("labeling:job_review_team", args=[job.pk]))

    assert "updating…" in body.content.decode()
    assert sent == [{"job_id": job.pk, "policy_id": job.version.policy_id}]
    assert tasks.refresh_agreement(**sent[0]) == 2
    assert AgreementSnapshot.objects.get(job=job).current
    poll = (
        client_for(reviewer)
        .get(reverse("labeling:job_review_team", args=[job.pk]), **HTMX_POLL)
        .content.decode()
    )
    assert poll.lstrip().startswith('<section class="card" id="team-agreement"')
    assert "As of" in poll and "updating" not in poll and 'id="assignment"' not in poll


def test_a_refresh_of_a_current_snapshot_writes_nothing(voted: Any) -> None:
    assert tasks.refresh_agreement(job_id=voted.pk) == 2
    before = list(AgreementSnapshot.objects.order_by("pk").values())

    with CaptureQueriesContext(connection) as queries:
        assert tasks.refresh_agreement(job_id=voted.pk) == 0

    assert list(AgreementSnapshot.objects.order_by("pk").values()) == before
    assert not [q for q in queries.captured_queries if q["sql"].lstrip().startswith("UPDATE")]
    assert not [q for q in queries.captured_queries if "review_vote" in q["sql"].lower()]


def test_an_older_refresh_never_overwrites_a_newer_one(
    voted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks.refresh_agreement(job_id=voted.pk)
    policy_id = voted.version.policy_id
    snapshots.note_agreement_change(policy_id=policy_id, job_id=voted.pk)
    row = AgreementSnapshot.objects.get(job=voted)
    newer = {"written": "by a faster refresh"}
    compute = snapshots.job_agreement

    def slow(job: Any) -> Any:
        # While this refresh computes, another change and a faster refresh land.
        AgreementSnapshot.objects.filter(pk=row.pk).update(
            changes=row.changes + 1, seen=row.changes + 1, figures=newer
        )
        return compute(job)

    monkeypatch.setattr(snapshots, "job_agreement", slow)
    assert tasks.refresh_agreement(job_id=voted.pk) == 1  # the policy's only

    stored = AgreementSnapshot.objects.get(pk=row.pk)
    assert (stored.figures, stored.seen) == (newer, row.changes + 1)


def _votes(author: Any, tasks_n: int, reviewers_n: int) -> Any:
    job = overlap_job(author, mismatches=[(i % 2, 0.9, 0.1) for i in range(tasks_n)])
    people = User.objects.bulk_create(
        [User(username=f"rater-{tasks_n}-{i}") for i in range(reviewers_n)]
    )
    ReviewVote.objects.bulk_create(
        ReviewVote(task_id=t, reviewer=p, label=str((t + i) % 2), wording="a", seconds=3.0)
        for t in task_ids(job)
        for i, p in enumerate(people)
    )
    ReviewTask.objects.filter(job=job).update(status="adjudicate")
    tasks.refresh_agreement(job_id=job.pk)
    return job


@pytest.mark.parametrize("page", ["labeling:job_review_team", "labeling:policy_review_team"])
def test_the_pages_queries_do_not_grow_with_the_votes(
    page: str, author: Any, reviewer: Any, django_assert_max_num_queries: Any
) -> None:
    small = _votes(author, tasks_n=5, reviewers_n=2)  # 10 votes
    big = _votes(author, tasks_n=20, reviewers_n=10)  # 200 votes
    assert ReviewVote.objects.filter(task__job=big).count() == 200
    client = client_for(reviewer)

    counts = []
    for job in (small, big):
        arg = job.pk if page == "labeling:job_review_team" else job.version.policy_id
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse(page, args=[arg]))
        assert response.status_code == 200 and "As of" in response.content.decode()
        assert not [q for q in queries.captured_queries if "review_vote" in q["sql"].lower()]
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]
    with django_assert_max_num_queries(counts[1]):
        client.get(reverse(page, args=[arg]))


def test_a_vote_written_or_deleted_on_any_path_marks_the_figures_stale(
    voted: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    """Not only the review page: a vote saved or deleted from the shell (or a script) counts."""
    tasks.refresh_agreement(job_id=voted.pk)
    policy_id = voted.version.policy_id
    vote = ReviewVote.objects.filter(task__job=voted).order_by("pk").first()
    assert vote is not None
    for write in (lambda: vote.save(), lambda: vote.delete()):
        with django_capture_on_commit_callbacks(execute=True):
            write()
        assert not snapshots.read_snapshot(policy_id=policy_id, job_id=voted.pk).current  # type: ignore[union-attr]
        assert not snapshots.read_snapshot(policy_id=policy_id).current  # type: ignore[union-attr]
        assert sent[-1] == {"job_id": voted.pk, "policy_id": None}
        tasks.refresh_agreement(job_id=voted.pk)
        assert snapshots.read_snapshot(policy_id=policy_id, job_id=voted.pk).current  # type: ignore[union-attr]
