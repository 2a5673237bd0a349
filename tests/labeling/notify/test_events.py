"""Each event is told once, to the right people, as they chose: a job's end on every path
that ends a job, an emptied review queue, a finalized version, an assignment."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from labeling.jobs import results, services
from labeling.models import (
    EmailStatus,
    EventKind,
    Job,
    JobStatus,
    Notification,
    NotificationPreference,
    NotifyEvent,
    ReviewStatus,
)
from labeling.notify.events import notify_assignment
from labeling.release.finalize import finalize
from labeling.review.claim import claim_next_task
from labeling.review.decisions import submit_decision
from tests.labeling.conftest import LABELED_TEXTS, TEXTS, fake_result, make_sample_set, make_version
from tests.labeling.release.test_finalize import (  # noqa: F401 - fixtures
    _one_sample_set,
    eval_set,
    good_job,
    resolve_all,
    version,
)
from tests.labeling.review.test_review import make_job
from worker.contract import ScoreResult

pytestmark = pytest.mark.django_db


def _run(author: Any, texts: list[str], sent: list[dict[str, Any]], capture: Any, **kw: Any) -> Job:
    """Start a job and deliver every chunk's result (each on-commit callback run)."""
    with capture(execute=True):
        job = services.start_job(
            version=make_version(author),
            sample_set=make_sample_set(author, texts),
            sample_size=None,
            by=author,
            chunk_size=3,
        )
    while sent:
        request = sent.pop(0)
        with capture(execute=True):
            results.record_chunk_result(ScoreResult.from_dict(fake_result(request, **kw)))
    job.refresh_from_db()
    return job


def _events(kind: str) -> list[NotifyEvent]:
    return list(NotifyEvent.objects.filter(kind=kind))


@pytest.mark.parametrize(
    ("texts", "error", "status", "kind"),
    [
        (LABELED_TEXTS, "", JobStatus.SUCCEEDED, EventKind.JOB_SUCCEEDED),
        (TEXTS, "", JobStatus.PARTIAL, EventKind.JOB_PARTIAL),
        (TEXTS, "CUDA out of memory", JobStatus.FAILED, EventKind.JOB_FAILED),
    ],
)
def test_job_end_tells_its_starter_once_in_app_and_by_email(
    author: Any,
    sent: list[dict[str, Any]],
    inline_notify: Any,
    django_capture_on_commit_callbacks: Any,
    texts: list[str],
    error: str,
    status: str,
    kind: str,
) -> None:
    author.email = "ada@example.org"
    author.save()
    job = _run(author, texts, sent, django_capture_on_commit_callbacks, error=error)
    assert job.status == status

    (event,) = _events(kind)
    assert f"Job #{job.pk}" in event.text
    (note,) = Notification.objects.filter(event=event)
    assert note.user == author and note.in_app and note.email_status == EmailStatus.SENT
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.org"]
    assert f"/labeling/jobs/{job.pk}/" in mail.outbox[0].body


def test_duplicated_result_deliveries_tell_once(
    author: Any,
    sent: list[dict[str, Any]],
    inline_notify: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Every result delivered twice (a redelivered task): the job finishes once, one event."""
    capture = django_capture_on_commit_callbacks
    with capture(execute=True):
        job = services.start_job(
            version=make_version(author),
            sample_set=make_sample_set(author, LABELED_TEXTS),
            sample_size=None,
            by=author,
            chunk_size=3,
        )
    delivered = []
    while sent:
        result = ScoreResult.from_dict(fake_result(sent.pop(0)))
        delivered.append(result)
        for _ in range(2):
            with capture(execute=True):
                results.record_chunk_result(result)
    for result in delivered:  # and all of them once more after the finish
        with capture(execute=True):
            assert results.record_chunk_result(result).action == "duplicate"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert NotifyEvent.objects.count() == 1
    assert Notification.objects.filter(user=author).count() == 1


def test_emit_twice_with_one_key_is_one_event(author: Any, reviewer: Any) -> None:
    job = make_job(author=author)
    first = notify_assignment(job=job, assignee=reviewer, task_count=2, batch="b1")
    again = notify_assignment(job=job, assignee=reviewer, task_count=2, batch="b1")
    assert first is not None and again is None
    (note,) = Notification.objects.filter(user=reviewer)
    assert note.event.kind == EventKind.ASSIGNMENT and "2 mismatches" in note.event.text
    assert notify_assignment(job=job, assignee=reviewer, task_count=1, batch="b2") is not None
    assert Notification.objects.filter(user=reviewer).count() == 2


def test_assignment_email_is_on_by_default(
    author: Any, reviewer: Any, inline_notify: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reviewer.email = "rui@example.org"
    reviewer.save()
    job = make_job(author=author)
    with django_capture_on_commit_callbacks(execute=True):
        notify_assignment(job=job, assignee=reviewer, task_count=3, batch="x", by=author)
    assert [m.to for m in mail.outbox] == [["rui@example.org"]]
    assert "assigned to you by ada_author" in mail.outbox[0].subject


def test_a_job_with_no_items_fails_and_tells(
    author: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    sample_set = make_sample_set(author, ["one item"])
    sample_set.items.all().delete()  # emptied after it was counted
    with django_capture_on_commit_callbacks(execute=True):
        job = services.start_job(
            version=make_version(author), sample_set=sample_set, sample_size=None, by=author
        )
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    (event,) = _events(EventKind.JOB_FAILED)
    assert Notification.objects.get(event=event).user == author


def test_cancel_tells_no_one(author: Any, sent: list[dict[str, Any]]) -> None:
    """The person who cancels knows; a cancelled job is not a job's end to announce."""
    job = services.start_job(
        version=make_version(author),
        sample_set=make_sample_set(author, LABELED_TEXTS),
        sample_size=None,
        by=author,
    )
    assert services.cancel_job(job)
    assert not NotifyEvent.objects.exists()


def test_choices_turn_off_in_app_and_email(
    author: Any,
    sent: list[dict[str, Any]],
    inline_notify: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    author.email = "ada@example.org"
    author.save()
    NotificationPreference.objects.create(
        user=author, kind=EventKind.JOB_SUCCEEDED, in_app=False, email=False
    )
    _run(author, LABELED_TEXTS, sent, django_capture_on_commit_callbacks)
    assert NotifyEvent.objects.filter(kind=EventKind.JOB_SUCCEEDED).count() == 1
    assert not Notification.objects.exists() and not mail.outbox


def test_no_email_without_an_address(
    author: Any,
    sent: list[dict[str, Any]],
    inline_notify: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _run(author, LABELED_TEXTS, sent, django_capture_on_commit_callbacks)
    (note,) = Notification.objects.all()
    assert note.email_status == EmailStatus.NONE and not mail.outbox


def test_queue_emptied_once_when_the_last_mismatch_is_decided(
    author: Any,
    reviewer: Any,
    second_reviewer: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = make_job(author=author)  # two mismatches
    first = claim_next_task(reviewer=reviewer, job=job)
    second = claim_next_task(reviewer=second_reviewer, job=job)
    assert first is not None and second is not None
    with django_capture_on_commit_callbacks(execute=True):
        submit_decision(task=first, reviewer=reviewer, label="1", wording="a")
    assert not _events(EventKind.QUEUE_EMPTIED)  # one still claimed
    with django_capture_on_commit_callbacks(execute=True):
        submit_decision(task=second, reviewer=second_reviewer, label="0", wording="b")
    (event,) = _events(EventKind.QUEUE_EMPTIED)
    assert Notification.objects.get(event=event).user == author
    assert "2 decisions" in event.text
    # A second look (the other reviewer's commit checking too) adds nothing.
    from labeling.notify.events import _check_queues

    _check_queues([job.pk])
    assert len(_events(EventKind.QUEUE_EMPTIED)) == 1
    assert not job.review_tasks.exclude(status=ReviewStatus.RESOLVED).exists()


def test_a_decision_that_leaves_work_waiting_opens_no_transaction_after_it(
    author: Any, reviewer: Any
) -> None:
    """The check after each decision is a plain read while the queue has work: on the embedded
    default a transaction takes SQLite's write lock, and every decision would pay for it."""
    from unittest import mock

    from labeling.notify import events

    job = make_job(author=author)  # two mismatches, both open
    with mock.patch.object(events, "transaction") as transaction:
        events._check_queues([job.pk])
    transaction.atomic.assert_not_called()
    job.review_tasks.update(status=ReviewStatus.RESOLVED)
    with mock.patch.object(events, "transaction") as transaction:
        events._check_queues([job.pk])
    assert transaction.atomic.called  # a queue that looks empty is checked under the lock


def test_the_check_after_a_decision_reads_every_touched_job_in_one_statement(
    author: Any, reviewer: Any
) -> None:
    """A decision carried to reruns touches several jobs: whether each still has work is one
    read, and only the job whose queue emptied gets its event."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from labeling.notify import events

    busy, emptied, gone = (make_job(author=author) for _ in range(3))
    emptied.review_tasks.update(status=ReviewStatus.RESOLVED)
    gone_id = gone.pk
    gone.delete()
    with CaptureQueriesContext(connection) as queries:
        events._check_queues([busy.pk, gone_id])
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    assert not _events(EventKind.QUEUE_EMPTIED)

    events._check_queues([busy.pk, emptied.pk, gone_id])
    (event,) = _events(EventKind.QUEUE_EMPTIED)
    assert event.data["job"] == emptied.pk


def test_finalize_tells_the_policy_people_but_not_the_finalizer(
    version: Any,  # noqa: F811 - the fixture
    author: Any,
    reviewer: Any,
    admin_user: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    resolve_all(good_job(version, author))
    finalize(version=version, by=admin_user)
    (event,) = _events(EventKind.VERSION_FINALIZED)
    assert set(Notification.objects.filter(event=event).values_list("user", flat=True)) == {
        author.pk
    }
    assert event.policy_id == version.policy_id and "finalized by ana_admin" in event.text
