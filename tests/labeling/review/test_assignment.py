"""Assigning a job's mismatches: named reviewers, an even split, the open queue; and the
review overlap setting's audit on every path."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.jobs.evaluation import update_policy_settings
from labeling.models import EventKind, Notification, ReviewStatus, ReviewTask
from labeling.review.assignment import (
    AssignmentError,
    AssignMode,
    assign_job_tasks,
    assignment_summary,
)
from labeling.review.claim import claim_next_task
from policies.models import Policy, PolicySettingChange, SettingPath
from tests.labeling.review.overlap_factories import decide_offered, make_person, task_ids
from tests.labeling.review.test_overlap import overlap_job


def test_named_reviewers_alone_are_offered_the_jobs_tasks(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = overlap_job(author, k=1)

    result = assign_job_tasks(job=job, mode=AssignMode.NAMED, reviewers=[reviewer])

    assert result.received == {reviewer.pk: task_ids(job)}
    assert claim_next_task(reviewer=second_reviewer, job=job) is None
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None and task.pk == task_ids(job)[0]


def test_a_split_gives_each_task_k_distinct_reviewers_evenly(author: Any) -> None:
    job = overlap_job(author, k=2, mismatches=[(1, 0.9, 0.1)] * 6)
    team = [make_person(f"rev_{i}") for i in range(3)]

    result = assign_job_tasks(job=job, mode=AssignMode.SPLIT, reviewers=team)

    for task in ReviewTask.objects.filter(job=job):
        assert len(set(task.assigned_to)) == 2
    assert sorted(len(ids) for ids in result.received.values()) == [4, 4, 4]
    assert assignment_summary(job) == {person.pk: 4 for person in team}
    # Each reviewer decides exactly their share; then every task has its two votes.
    for person in team:
        decided = decide_offered(person, job, dict.fromkeys(task_ids(job), "1"))
        assert sorted(decided) == sorted(result.received[person.pk])
    assert set(job.review_tasks.values_list("status", flat=True)) == {ReviewStatus.RESOLVED}


def test_fewer_reviewers_than_the_overlap_is_refused(author: Any, reviewer: Any) -> None:
    job = overlap_job(author, k=2)

    with pytest.raises(AssignmentError, match="at least 2 reviewers"):
        assign_job_tasks(job=job, mode=AssignMode.SPLIT, reviewers=[reviewer])
    assert not ReviewTask.objects.exclude(assigned_to=[]).exists()


def test_back_to_the_open_queue(author: Any, reviewer: Any, second_reviewer: Any) -> None:
    job = overlap_job(author, k=1)
    assign_job_tasks(job=job, mode=AssignMode.NAMED, reviewers=[reviewer])

    result = assign_job_tasks(job=job, mode=AssignMode.OPEN)

    assert result.received == {} and result.changed == len(task_ids(job))
    assert claim_next_task(reviewer=second_reviewer, job=job) is not None
    assert assignment_summary(job) == {0: len(task_ids(job))}


def test_decided_tasks_keep_their_assignment(author: Any, reviewer: Any) -> None:
    job = overlap_job(author, k=1, mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7)])
    decided = task_ids(job)[0]
    job.review_tasks.filter(pk=decided).update(status=ReviewStatus.RESOLVED)

    result = assign_job_tasks(job=job, mode=AssignMode.NAMED, reviewers=[reviewer])

    assert result.received == {reviewer.pk: [task_ids(job)[1]]}
    assert ReviewTask.objects.get(pk=decided).assigned_to == []


def test_a_split_skips_reviewers_who_already_voted(author: Any) -> None:
    job = overlap_job(author, k=2, mismatches=[(1, 0.9, 0.1)])
    [task_id] = task_ids(job)
    first, second, third = (make_person(f"voter_{i}") for i in range(3))
    decide_offered(first, job, {task_id: "1"})

    result = assign_job_tasks(job=job, mode=AssignMode.SPLIT, reviewers=[first, second, third])

    assigned = ReviewTask.objects.get(pk=task_id).assigned_to
    assert len(assigned) == 1 and first.pk not in assigned
    assert sum(len(ids) for ids in result.received.values()) == 1


# --- the review overlap setting ---------------------------------------------------------------


def test_overlap_changed_on_the_settings_page_is_audited(author: Any, admin_user: Any) -> None:
    policy = overlap_job(author, k=1).version.policy

    changes = update_policy_settings(
        policy=policy,
        agreement_threshold=policy.agreement_threshold,
        min_sample_size=policy.min_sample_size,
        evaluation_set=None,
        by=admin_user,
        review_overlap=3,
    )

    assert [(c.field, c.old_value, c.new_value, c.via) for c in changes] == [
        ("review_overlap", "1", "3", SettingPath.SETTINGS)
    ]
    assert Policy.objects.get(pk=policy.pk).review_overlap == 3


def test_overlap_changed_from_the_shell_or_admin_is_audited(author: Any, admin_user: Any) -> None:
    policy = overlap_job(author, k=1).version.policy

    Policy.objects.filter(pk=policy.pk).update(review_overlap=2)
    client = Client()
    client.force_login(admin_user)
    admin_user.is_superuser = True
    admin_user.save()
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "slug"}
    data.update(
        review_overlap=4,
        created_by=author.pk,
        **{"versions-TOTAL_FORMS": 0, "versions-INITIAL_FORMS": 0},
    )
    response = client.post(url, data)

    assert response.status_code == 302, response.content[:2000]
    rows = PolicySettingChange.objects.filter(policy=policy, field="review_overlap")
    assert [(r.old_value, r.new_value, r.via) for r in rows.order_by("pk")] == [
        ("1", "2", SettingPath.SHELL),
        ("2", "4", SettingPath.ADMIN),
    ]


def test_each_reviewer_who_receives_tasks_is_told_once_per_assignment(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    job = overlap_job(author, k=1, mismatches=[(1, 0.9, 0.1)] * 4)
    assign_job_tasks(
        job=job, mode=AssignMode.SPLIT, reviewers=[reviewer, second_reviewer], by=author
    )
    told = Notification.objects.filter(event__kind=EventKind.ASSIGNMENT)
    assert sorted(told.values_list("user_id", flat=True)) == sorted(
        [reviewer.pk, second_reviewer.pk]
    )
    assert all("2 mismatches" in n.event.text and author.username in n.event.text for n in told)
    # The same assignment again changes no task: nobody is told again.
    assign_job_tasks(
        job=job, mode=AssignMode.SPLIT, reviewers=[reviewer, second_reviewer], by=author
    )
    assert told.count() == 2
