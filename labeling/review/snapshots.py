"""Stored reviewer agreement: the agreement pages read one ``AgreementSnapshot`` row (one
indexed query) and never compute the figures; a Celery task (``refresh_agreement``) computes
them in the background.

Freshness is exact and cheap: every change to the figures' inputs adds one to ``changes`` on
the job's row and its policy's row, in the writer's own transaction (``note_agreement_change``):
a vote (``submit_vote``, which also makes the final decision when the votes agree), an
adjudication (``adjudicate``), and an edit that changes the label of a voted task's final
decision (``edit_decision``). Undo never touches a voted task (it refuses them) and assignment
or claims change no figure, so they add nothing. A refresh reads ``changes`` before it reads
the votes, so the figures it stores include at least that many changes, and it stores that
count as ``seen``: a snapshot is current when ``seen == changes``. A refresh that finds it
current writes nothing (several changes in a row cost one computation), and a slower refresh
never overwrites a newer one (its write is conditional on ``seen`` being below its count).

Rows are bumped policy first, then job, in every writer, so two writers never wait on each other
in opposite orders.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from cope_studio.celery import app as celery_app
from labeling.models import AgreementSnapshot, Job, ReviewTask, ReviewVote
from labeling.review.team import job_agreement, policy_agreement, to_json
from policies.models import Policy
from worker.contract import DEFAULT_QUEUE

log = logging.getLogger(__name__)

REFRESH_AGREEMENT_TASK = "labeling.refresh_agreement"
# A page showing a stale snapshot asks for a refresh at most this often (a lost message is sent
# again; a refresh already queued is not sent twice).
REFRESH_AGAIN_SECONDS = 60


def _rows(policy_id: int, job_id: int | None) -> QuerySet[AgreementSnapshot]:
    """The one row of a job, or of the policy (no job): a unique, indexed lookup."""
    rows = AgreementSnapshot.objects.filter(policy_id=policy_id)
    return rows.filter(job__isnull=True) if job_id is None else rows.filter(job_id=job_id)


def send_refresh(*, job_id: int | None = None, policy_id: int | None = None) -> None:
    """Queue ``refresh_agreement``; a broker that refuses is logged (the page asks again)."""
    try:
        celery_app.send_task(
            REFRESH_AGREEMENT_TASK,
            kwargs={"job_id": job_id, "policy_id": policy_id},
            queue=DEFAULT_QUEUE,
        )
    except Exception:
        log.warning("agreement of job %s: the broker refused the refresh", job_id, exc_info=True)


def note_agreement_change(*, policy_id: int, job_id: int) -> None:
    """Mark the job's and its policy's figures out of date, inside the caller's transaction,
    and queue a refresh once it commits."""
    now = timezone.now()
    for job in (None, job_id):
        rows = _rows(policy_id, job)
        if not rows.update(changes=F("changes") + 1, requested_at=now):
            rows.get_or_create(defaults={"policy_id": policy_id, "job_id": job})
            rows.update(changes=F("changes") + 1, requested_at=now)
    transaction.on_commit(lambda: send_refresh(job_id=job_id))


def note_voted_task_change(task_id: int) -> None:
    """``note_agreement_change`` for a task whose final decision changed, if it has votes (only
    voted tasks are in the figures)."""
    row = (
        ReviewTask.objects.filter(pk=task_id)
        .filter(Exists(ReviewVote.objects.filter(task_id=OuterRef("pk"))))
        .values_list("policy_id", "job_id")
        .first()
    )
    if row is not None:
        note_agreement_change(policy_id=row[0], job_id=row[1])


def vote_written(sender: Any, instance: ReviewVote, raw: bool = False, **kwargs: Any) -> None:
    """A vote saved or deleted, on any path (the review page, the shell, a script, a fixture
    load aside): its job's and policy's figures are out of date. Connected to ``post_save`` and
    ``post_delete`` of ``ReviewVote`` in ``labeling.apps``."""
    if raw:
        return
    task = ReviewTask.objects.filter(pk=instance.task_id).values_list("policy_id", "job_id")
    row = task.first()
    if row is not None:  # a vote deleted with its task leaves no figure to mark
        note_agreement_change(policy_id=row[0], job_id=row[1])


def read_snapshot(*, policy_id: int, job_id: int | None = None) -> AgreementSnapshot | None:
    """The stored figures of a job (or, with no job, of the policy): one indexed query."""
    return _rows(policy_id, job_id).first()


def request_refresh(*, policy_id: int, job_id: int | None = None) -> bool:
    """Queue a refresh for a missing or stale snapshot unless one was queued lately; whether
    one was queued."""
    now = timezone.now()
    snapshot, created = _rows(policy_id, job_id).get_or_create(
        defaults={"policy_id": policy_id, "job_id": job_id, "requested_at": now}
    )
    if not created:
        lately = now - timedelta(seconds=REFRESH_AGAIN_SECONDS)
        claimed = (
            AgreementSnapshot.objects.filter(pk=snapshot.pk)
            .filter(Q(requested_at__isnull=True) | Q(requested_at__lt=lately))
            .update(requested_at=now)
        )
        if claimed != 1:
            return False
    transaction.on_commit(lambda: send_refresh(job_id=job_id, policy_id=policy_id))
    return True


def _refresh_one(policy: Policy, job: Job | None) -> bool:
    rows = _rows(policy.pk, job.pk if job is not None else None)
    snapshot, _ = rows.get_or_create(defaults={"policy": policy, "job": job})
    if snapshot.current:
        return False
    counted = snapshot.changes  # read before the votes: the figures include these changes
    figures = to_json(job_agreement(job) if job is not None else policy_agreement(policy))
    written = (
        AgreementSnapshot.objects.filter(pk=snapshot.pk)
        .filter(Q(seen__lt=counted) | Q(computed_at__isnull=True))
        .update(figures=figures, seen=counted, computed_at=timezone.now())
    )
    return written == 1


def refresh_agreement(*, job_id: int | None = None, policy_id: int | None = None) -> int:
    """Recompute the job's snapshot and its policy's (or, with only ``policy_id``, the
    policy's), each only if it is not current; the number of snapshots written. A job or
    policy deleted meanwhile is skipped."""
    jobs = Job.objects.select_related("version__policy")
    job = jobs.filter(pk=job_id).first() if job_id is not None else None
    if job is not None:
        policy: Policy | None = job.version.policy
    else:
        policy = Policy.objects.filter(pk=policy_id).first() if policy_id is not None else None
    if policy is None:
        return 0
    written = int(_refresh_one(policy, None))
    if job is not None:
        written += _refresh_one(policy, job)
    return written
