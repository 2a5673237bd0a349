"""Shared by the overlap, adjudication and assignment tests: a lead persona and a reviewer who
decides everything the queue offers them in one job."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User

from labeling.models import Job, ReviewTask
from labeling.review.claim import claim_next_task
from labeling.review.decisions import submit_decision
from policies.roles import LEAD, REVIEWER, ensure_roles
from tests.conftest import PASSWORD


def make_person(username: str, role: str = REVIEWER) -> User:
    ensure_roles()
    user = User.objects.create_user(username=username, password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


def make_lead(username: str = "lena_lead") -> User:
    return make_person(username, LEAD)


def decide_offered(reviewer: User, job: Job, labels: dict[int, str]) -> list[int]:
    """Claim and decide every task the queue offers the reviewer in the job, with the label
    ``labels`` gives its item (by task id); the task ids in the order offered."""
    seen: list[int] = []
    while True:
        task: ReviewTask | None = claim_next_task(reviewer=reviewer, job=job)
        if task is None:
            return seen
        assert task.pk not in seen, "a task was offered twice to the same reviewer"
        seen.append(task.pk)
        submit_decision(task=task, reviewer=reviewer, label=labels[task.pk], wording="a")


def task_ids(job: Job) -> list[int]:
    return list(job.review_tasks.order_by("id").values_list("id", flat=True))


def as_units(job: Job) -> list[dict[Any, str]]:
    units: dict[int, dict[Any, str]] = {}
    for task_id, reviewer_id, label in (
        job.review_tasks.model.objects.filter(job=job)
        .values_list("id", "votes__reviewer_id", "votes__label")
        .exclude(votes__isnull=True)
    ):
        units.setdefault(task_id, {})[reviewer_id] = label
    return list(units.values())
