"""What the policy pages ask of the app that labels versions, without importing it.

Imports point one way, labeling → policies: policies never reads labeling's tables. Two facts
about labeling reach the policy pages through this module instead, answered by the functions
the labeling app registers when Django is ready (``labeling.apps``):

* which versions have labeling jobs (a twin is frozen once its version has jobs; a policy whose
  latest version has jobs is "in review");
* each policy's agreement figure: the one the labeling app decides a version's agreement by
  (its deciding job), for the newest version that has one;
* for one version's text, how many mismatches each clause decides and how many gold misses it
  causes (the version page's heat strip), from its newest explained job.

Both answer for many policies or versions at once, in a number of queries that does not grow
with them. Without a registered app (policies alone), no version has jobs or figures.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from policies.models import Policy


@dataclass(frozen=True)
class AgreementFigure:
    """A policy's agreement as the labeling app decides it, and where it comes from."""

    version_id: int
    version_number: int
    job_id: int
    stats: dict[str, Any]  # p_o, kappa, n, … as the job page shows them


@dataclass(frozen=True)
class ClauseCount:
    """One clause's part in a job's labels, with the pages that list its items."""

    mismatches: int  # mismatches its wording decides (alone or tied)
    gold_misses: int  # wrong labels its removal fixes
    mismatches_url: str
    gold_misses_url: str


@dataclass(frozen=True)
class ClauseFigures:
    """Clause counts of a version's newest explained job, by clause key of ``text`` (the
    job's text A, which is the version's text when it ran)."""

    job_id: int
    text: str
    clauses: dict[str, ClauseCount]


VersionsWithJobs = Callable[[Collection[int]], set[int]]
AgreementFigures = Callable[[Sequence[Policy]], dict[int, AgreementFigure]]
ClauseFiguresOf = Callable[[int], ClauseFigures | None]


def _no_clause_figures(version_id: int) -> ClauseFigures | None:
    return None


@dataclass(frozen=True)
class LabelingHooks:
    versions_with_jobs: VersionsWithJobs  # version ids → those that have jobs
    agreement_figures: AgreementFigures  # policies → {policy id: figure} where one exists
    clause_figures: ClauseFiguresOf = _no_clause_figures  # version id → its clause counts


def _no_jobs(version_ids: Collection[int]) -> set[int]:
    return set()


def _no_figures(policies: Sequence[Policy]) -> dict[int, AgreementFigure]:
    return {}


_hooks = LabelingHooks(versions_with_jobs=_no_jobs, agreement_figures=_no_figures)


def register(hooks: LabelingHooks) -> None:
    """Called once by the labeling app when Django is ready."""
    global _hooks
    _hooks = hooks


def versions_with_jobs(version_ids: Collection[int]) -> set[int]:
    """The ids among ``version_ids`` of versions that have labeling jobs."""
    if not version_ids:
        return set()
    return _hooks.versions_with_jobs(version_ids)


def agreement_figures(policies: Sequence[Policy]) -> dict[int, AgreementFigure]:
    """Each policy's agreement figure, by policy id; policies without one are left out."""
    if not policies:
        return {}
    return _hooks.agreement_figures(policies)


def clause_figures(version_id: int) -> ClauseFigures | None:
    """How many mismatches and gold misses each clause of the version's text decides, from its
    newest explained job (a fixed number of queries); None when none was explained."""
    return _hooks.clause_figures(version_id)
