"""Reviewer agreement of a job or a policy, from the overlap votes: the figures of
``labeling.rater_agreement`` with reviewers' names, and each reviewer's own figures.

The figures read every vote of the job or policy (a vote exists only where the policy asked for
overlap) and each voted task's final decision: the result the reviewers are compared with. That
work grows with the votes, so only the background refresh (``labeling.review.snapshots``) runs
it; pages read the stored figures (``to_json`` / ``from_json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet

from labeling.models import Decision, GoldChoice, Job, ReviewStatus, ReviewTask, ReviewVote
from labeling.rater_agreement import (
    PairAgreement,
    RaterAgreement,
    RaterFigures,
    rater_agreement,
    rater_figures,
)
from policies.models import Policy


@dataclass(frozen=True)
class ReviewerRow:
    reviewer_id: int
    username: str
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
    names = dict(User.objects.filter(pk__in={row[1] for row in rows}).values_list("pk", "username"))
    # Votes that disagree and a final decision: a lead adjudicated it.
    adjudicated = sum(1 for t, unit in units.items() if t in finals and len(set(unit.values())) > 1)
    undecided = ReviewTask.objects.filter(pk__in=votes.values("task_id")).exclude(
        status=ReviewStatus.RESOLVED
    )
    awaiting = undecided.filter(status=ReviewStatus.ADJUDICATE).count()
    return TeamAgreement(
        figures=figures,
        reviewers=[
            ReviewerRow(f.rater, names[f.rater], f)
            for f in rater_figures(rows, finals)
            if f.rater in names
        ],
        names=names,
        adjudicated=adjudicated,
        awaiting=awaiting,
        waiting_votes=undecided.count() - awaiting,
    )


def job_agreement(job: Job) -> TeamAgreement:
    return _team(ReviewVote.objects.filter(task__job=job))


def policy_agreement(policy: Policy) -> TeamAgreement:
    return _team(ReviewVote.objects.filter(task__policy=policy))


def to_json(team: TeamAgreement) -> dict[str, Any]:
    """The figures as stored in ``AgreementSnapshot.figures`` (``from_json`` reads them back)."""
    return {
        "figures": asdict(team.figures),
        "reviewers": [
            {"id": row.reviewer_id, "username": row.username, "figures": asdict(row.figures)}
            for row in team.reviewers
        ],
        "names": {str(pk): name for pk, name in team.names.items()},
        "adjudicated": team.adjudicated,
        "awaiting": team.awaiting,
        "waiting_votes": team.waiting_votes,
    }


def from_json(data: dict[str, Any]) -> TeamAgreement:
    figures = dict(data["figures"])
    figures["pairs"] = tuple(PairAgreement(**pair) for pair in figures["pairs"])
    return TeamAgreement(
        figures=RaterAgreement(**figures),
        reviewers=[
            ReviewerRow(row["id"], row["username"], RaterFigures(**row["figures"]))
            for row in data["reviewers"]
        ],
        names={int(pk): name for pk, name in data["names"].items()},
        adjudicated=data["adjudicated"],
        awaiting=data["awaiting"],
        waiting_votes=data["waiting_votes"],
    )
