"""Reviewer agreement of a job or a policy, from the overlap votes: the figures of
``labeling.rater_agreement`` with reviewers' names, and each reviewer's own figures.

The figures read every vote of the job or policy (a vote exists only where the policy asked for
overlap) and each voted task's final decision: the result the reviewers are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import QuerySet

from labeling.models import Decision, GoldChoice, Job, ReviewStatus, ReviewTask, ReviewVote
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
    units: dict[int, dict[int, str]] = {}
    for task_id, reviewer_id, label, _seconds in rows:
        units.setdefault(task_id, {})[reviewer_id] = label
    finals = dict(
        Decision.objects.filter(task__in=votes.values("task_id")).values_list("task_id", "label")
    )
    figures = rater_agreement(list(units.values()), categories=len(GoldChoice.values))
    users = {u.pk: u for u in User.objects.filter(pk__in={row[1] for row in rows})}
    # Votes that disagree and a final decision: a lead adjudicated it.
    adjudicated = sum(1 for t, unit in units.items() if t in finals and len(set(unit.values())) > 1)
    undecided = ReviewTask.objects.filter(pk__in=votes.values("task_id")).exclude(
        status=ReviewStatus.RESOLVED
    )
    awaiting = undecided.filter(status=ReviewStatus.ADJUDICATE).count()
    return TeamAgreement(
        figures=figures,
        reviewers=[
            ReviewerRow(users[f.rater], f) for f in rater_figures(rows, finals) if f.rater in users
        ],
        names={pk: user.get_username() for pk, user in users.items()},
        adjudicated=adjudicated,
        awaiting=awaiting,
        waiting_votes=undecided.count() - awaiting,
    )


def job_agreement(job: Job) -> TeamAgreement:
    return _team(ReviewVote.objects.filter(task__job=job))


def policy_agreement(policy: Policy) -> TeamAgreement:
    return _team(ReviewVote.objects.filter(task__policy=policy))
