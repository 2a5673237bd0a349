"""Reviewer agreement of a job or a policy, from the overlap votes: the figures of
``labeling.rater_agreement`` with reviewers' names, and each reviewer's own figures.

The figures read every vote of the job or policy (a vote exists only where the policy asked for
overlap) and each voted task's final decision: the result the reviewers are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import QuerySet

from labeling.models import Decision, GoldChoice, Job, ReviewStatus, ReviewVote
from labeling.rater_agreement import RaterAgreement, RaterFigures, rater_agreement, rater_figures
from policies.models import Policy


@dataclass(frozen=True)
class ReviewerRow:
    reviewer: User
    figures: RaterFigures


@dataclass(frozen=True)
class TeamAgreement:
    figures: RaterAgreement
    reviewers: list[ReviewerRow]
    names: dict[int, str]  # reviewer id -> username, for the pairs table
    adjudicated: int  # voted tasks a lead decided
    awaiting: int  # voted tasks waiting for adjudication
    waiting_votes: int  # voted tasks still short of the policy's overlap


def _team(votes: QuerySet[ReviewVote]) -> TeamAgreement:
    rows = list(votes.values_list("task_id", "reviewer_id", "label", "seconds"))
    task_ids = sorted({row[0] for row in rows})
    units: dict[int, dict[int, str]] = {}
    for task_id, reviewer_id, label, _seconds in rows:
        units.setdefault(task_id, {})[reviewer_id] = label
    finals = dict(Decision.objects.filter(task_id__in=task_ids).values_list("task_id", "label"))
    figures = rater_agreement(list(units.values()), categories=len(GoldChoice.values))
    users = {u.pk: u for u in User.objects.filter(pk__in={row[1] for row in rows})}
    statuses = list(
        Decision.objects.filter(task_id__in=task_ids).values_list("task_id", "reviewer_id")
    )
    voters = {task_id: set(unit) for task_id, unit in units.items()}
    adjudicated = sum(1 for task_id, by in statuses if by not in voters[task_id])
    from_votes = votes.values("task__status")
    awaiting = (
        from_votes.filter(task__status=ReviewStatus.ADJUDICATE).values("task_id").distinct().count()
    )
    waiting = from_votes.filter(task__status__in=[ReviewStatus.OPEN, ReviewStatus.CLAIMED])
    return TeamAgreement(
        figures=figures,
        reviewers=[
            ReviewerRow(users[f.rater], f) for f in rater_figures(rows, finals) if f.rater in users
        ],
        names={pk: user.get_username() for pk, user in users.items()},
        adjudicated=adjudicated,
        awaiting=awaiting,
        waiting_votes=waiting.values("task_id").distinct().count(),
    )


def job_agreement(job: Job) -> TeamAgreement:
    return _team(ReviewVote.objects.filter(task__job=job))


def policy_agreement(policy: Policy) -> TeamAgreement:
    return _team(ReviewVote.objects.filter(task__policy=policy))
