"""Who may take a job's mismatches: anyone (the open queue, the default), named reviewers, or
reviewers the mismatches are split among evenly.

An assigned task is offered only to its assignees (``ReviewTask.assigned_to``, read by the
queue's claim). With a policy's overlap k a split gives every task k distinct assignees, so each
can collect its k votes; naming fewer reviewers than k is refused for the same reason. Only
tasks still waiting for a reviewer change (open, or claimed: the claim holder keeps the claim);
decided tasks and tasks awaiting adjudication keep what they had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.db.models import Q, QuerySet, TextChoices
from django.utils import timezone

from labeling.models import Job, ReviewStatus, ReviewTask, ReviewVote
from labeling.notify.events import notify_assignment

_BATCH = 1000


class AssignMode(TextChoices):
    OPEN = "open", "Open queue (anyone may take them)"
    NAMED = "named", "The named reviewers (any of them)"
    SPLIT = "split", "Split evenly among the chosen reviewers"


class AssignmentError(ValueError):
    """An assignment that could not give every task the decisions it needs."""


@dataclass(frozen=True)
class AssignmentResult:
    """What an assignment did: per reviewer id, the task ids newly assigned to them (what an
    "assignment received" notification tells each), and how many tasks changed."""

    job_id: int
    mode: str
    changed: int
    received: dict[int, list[int]] = field(default_factory=dict)


def eligible_reviewers() -> QuerySet[User]:
    """Active accounts that may record decisions (through a group, their own permission, or
    as superusers)."""
    perm = Permission.objects.filter(codename="add_decision", content_type__app_label="labeling")
    return (
        User.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True) | Q(groups__permissions__in=perm) | Q(user_permissions__in=perm)
        )
        .distinct()
        .order_by("username")
    )


def _assignees(
    mode: str, reviewer_ids: list[int], overlap: int, voters: set[int], turn: int
) -> tuple[list[int], int]:
    """A task's assignees and the next split turn."""
    if mode == AssignMode.OPEN:
        return [], turn
    if mode == AssignMode.NAMED:
        return list(reviewer_ids), turn
    needed = max(1, overlap - len(voters))
    chosen: list[int] = []
    n = len(reviewer_ids)
    for step in range(n):
        candidate = reviewer_ids[(turn + step) % n]
        if candidate not in voters:
            chosen.append(candidate)
        if len(chosen) == needed:
            break
    return sorted(chosen), turn + needed


def assign_job_tasks(
    *, job: Job, mode: str, reviewers: Sequence[User] = (), by: User | None = None
) -> AssignmentResult:
    """Assign the job's waiting mismatches (see the module's note); the reviewers who received
    tasks and which. Each of them is told (``notify_assignment``, once per assignment act)."""
    if mode not in AssignMode.values:
        raise AssignmentError(f"Unknown assignment {mode!r}")
    reviewer_ids = sorted({reviewer.pk for reviewer in reviewers})
    overlap = job.version.policy.review_overlap
    if mode != AssignMode.OPEN and len(reviewer_ids) < overlap:
        raise AssignmentError(
            f"The policy asks for {overlap} independent decisions per mismatch: choose at "
            f"least {overlap} reviewers."
        )
    received: dict[int, list[int]] = {}
    changed: list[ReviewTask] = []
    with transaction.atomic():
        waiting = job.review_tasks.filter(
            status__in=[ReviewStatus.OPEN, ReviewStatus.CLAIMED]
        ).order_by("id")
        tasks = list(waiting.select_for_update().only("id", "assigned_to"))
        voters: dict[int, set[int]] = {}
        for task_id, voter in ReviewVote.objects.filter(
            task_id__in=[t.pk for t in tasks]
        ).values_list("task_id", "reviewer_id"):
            voters.setdefault(task_id, set()).add(voter)
        turn = 0
        for task in tasks:
            assignees, turn = _assignees(
                mode, reviewer_ids, overlap, voters.get(task.pk, set()), turn
            )
            before = set(task.assigned_to or [])
            if assignees == sorted(before):
                continue
            for reviewer_id in assignees:
                if reviewer_id not in before:
                    received.setdefault(reviewer_id, []).append(task.pk)
            task.assigned_to = assignees
            changed.append(task)
        ReviewTask.objects.bulk_update(changed, ["assigned_to"], batch_size=_BATCH)
        act = timezone.now().isoformat()
        for assignee in User.objects.filter(pk__in=list(received)):
            notify_assignment(
                job=job, assignee=assignee, task_count=len(received[assignee.pk]), batch=act, by=by
            )
    return AssignmentResult(job_id=job.pk, mode=mode, changed=len(changed), received=received)


def assignment_summary(job: Job) -> dict[int, int]:
    """Per reviewer id, how many of the job's waiting tasks are assigned to them; key 0 counts
    the tasks left to the open queue."""
    summary: dict[int, int] = {}
    waiting = job.review_tasks.filter(status__in=[ReviewStatus.OPEN, ReviewStatus.CLAIMED])
    for assigned in waiting.values_list("assigned_to", flat=True).iterator():
        for reviewer_id in assigned or [0]:
            summary[reviewer_id] = summary.get(reviewer_id, 0) + 1
    return summary
