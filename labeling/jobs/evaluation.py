"""Which job speaks for a version: the policy's evaluation set and each version's deciding job.

Every figure shown for a version is its *deciding job*'s: its latest job that

* succeeded (a partial, failed or cancelled job never decides),
* compared A with the version's own twin (a "v4 vs v3" or pasted-text comparison answers
  another question),
* ran on the policy's evaluation set, and
* labeled at least the policy's minimum sample on both sides (``stats["n"]``).

So a 1-item test run, a partial job, or a run on another set, never moves a version's figure:
the chart, the panels, the policy list (through ``policies.hooks``), finalize and the API all
read it here.

The evaluation set is chosen once per policy (settings page). Until someone chooses one, it is
the first sample set on which a job of the policy reached the minimum sample: the first honest
measurement fixes where later versions are compared. The pages say which rule applies.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, F, IntegerField, Max, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from labeling.jobs.display import pct
from labeling.models import (
    CompareKind,
    Job,
    JobStatus,
    PolicyEvaluation,
    SampleSet,
)
from policies import services as policy_services
from policies.hooks import AgreementFigure
from policies.models import (
    MAX_REVIEW_OVERLAP,
    Policy,
    PolicySettingChange,
    SettingPath,
    Version,
    percent_text,
    setting_text,
)

# NULLs last: PostgreSQL sorts NULL first in a plain descending order, SQLite last.
_LATEST_FIRST = (F("finished_at").desc(nulls_last=True), F("id").desc())
_FIRST_FIRST = (F("finished_at").asc(nulls_last=True), F("id").asc())


@dataclass(frozen=True)
class EvaluationChoice:
    """The policy's evaluation set and how it was chosen, for the pages."""

    sample_set: SampleSet | None
    chosen: bool  # True: picked by a person; False: the automatic rule (or none yet)
    chosen_by: str = ""
    chosen_at: object = None

    @property
    def explanation(self) -> str:
        if self.sample_set is None:
            return (
                "No evaluation set yet: the first sample set a twin job of this policy labels "
                "at the minimum sample becomes it, unless an admin chooses one in the settings."
            )
        if self.chosen:
            return f"“{self.sample_set.name}”, chosen by {self.chosen_by or 'an admin'}."
        return (
            f"“{self.sample_set.name}”, chosen automatically: the first sample set a job of this "
            "policy labeled at the minimum sample. An admin can choose another in the settings."
        )


# The rules, written once -----------------------------------------------------------------------
# Each takes the policy and its minimum sample either as values (one policy) or as ``OuterRef``s
# (a subquery per policy, for pages that list many).


def _measured(policy: Policy | OuterRef, min_sample: int | OuterRef) -> QuerySet[Job]:
    """The policy's jobs that can speak for their version anywhere: succeeded, against the
    version's own twin, with at least the minimum sample labeled on both sides."""
    return (
        Job.objects.filter(
            version__policy=policy, status=JobStatus.SUCCEEDED, compare_kind=CompareKind.TWIN
        )
        .alias(labeled_both=Cast(KT("stats__n"), IntegerField()))
        .filter(labeled_both__gte=min_sample)
    )


def _first_measured(policy: Policy | OuterRef, min_sample: int | OuterRef) -> QuerySet[Job]:
    """The automatic evaluation set's rule: the first measured job's sample set."""
    return _measured(policy, min_sample).order_by(*_FIRST_FIRST)


def evaluation_choice(policy: Policy) -> EvaluationChoice:
    row = (
        PolicyEvaluation.objects.filter(policy=policy, sample_set__isnull=False)
        .select_related("sample_set", "chosen_by")
        .first()
    )
    if row is not None:
        return EvaluationChoice(
            sample_set=row.sample_set,
            chosen=True,
            chosen_by=row.chosen_by.get_username() if row.chosen_by else "",
            chosen_at=row.chosen_at,
        )
    first = _first_measured(policy, policy.min_sample_size).select_related("sample_set").first()
    return EvaluationChoice(sample_set=first.sample_set if first else None, chosen=False)


def evaluation_set(policy: Policy) -> SampleSet | None:
    """The sample set the policy's versions are compared on (see the module docstring)."""
    return evaluation_choice(policy).sample_set


# Deciding jobs ---------------------------------------------------------------------------------


def deciding_job(version: Version) -> Job | None:
    """The job that speaks for the version on every page, for finalizing and in the API."""
    policy = version.policy
    sample_set = evaluation_set(policy)
    if sample_set is None:
        return None
    jobs = _measured(policy, policy.min_sample_size).filter(sample_set=sample_set)
    return jobs.filter(version=version).order_by(*_LATEST_FIRST).first()


def deciding_jobs(policy: Policy, versions: Iterable[Version]) -> dict[int, Job]:
    """``deciding_job`` of each of the policy's versions, by version id (two queries)."""
    sample_set = evaluation_set(policy)
    if sample_set is None:
        return {}
    ids = [v.pk for v in versions]
    latest: dict[int, Job] = {}
    jobs = _measured(policy, policy.min_sample_size).filter(sample_set=sample_set)
    for job in jobs.filter(version_id__in=ids).order_by("version_id", *_LATEST_FIRST):
        latest.setdefault(job.version_id, job)
    return latest


def _latest_deciding_job_ids(policies: Sequence[Policy]) -> dict[int, int]:
    """For each policy, the deciding job of its newest version that has one: one query of one
    row per policy, the rules above as subqueries."""
    policy, min_sample = OuterRef("pk"), OuterRef("min_sample_size")
    chosen = PolicyEvaluation.objects.filter(policy=policy, sample_set__isnull=False)
    automatic = _first_measured(policy, min_sample)
    deciding = (
        _measured(policy, min_sample)
        .filter(sample_set_id=OuterRef("evaluation_set_id"))
        .order_by("-version__number", *_LATEST_FIRST)
    )
    rows = (
        Policy.objects.filter(pk__in=[p.pk for p in policies])
        .annotate(
            evaluation_set_id=Coalesce(
                Subquery(chosen.values("sample_set_id")[:1]),
                Subquery(automatic.values("sample_set_id")[:1]),
            )
        )
        .annotate(deciding_id=Subquery(deciding.values("pk")[:1]))
        .values_list("pk", "deciding_id")
    )
    return {policy_id: job_id for policy_id, job_id in rows if job_id is not None}


def agreement_figures(policies: Sequence[Policy]) -> dict[int, AgreementFigure]:
    """The figure the policy list shows for each policy, by policy id (two queries): the
    deciding job of its newest version that has one. Registered with ``policies.hooks``."""
    by_job = {job_id: policy_id for policy_id, job_id in _latest_deciding_job_ids(policies).items()}
    rows = Job.objects.filter(pk__in=list(by_job)).values_list(
        "pk", "stats", "version_id", "version__number"
    )
    return {
        by_job[pk]: AgreementFigure(
            version_id=version_id, version_number=number, job_id=pk, stats=stats
        )
        for pk, stats, version_id, number in rows
    }


def versions_with_jobs(version_ids: Collection[int]) -> set[int]:
    """The ids among ``version_ids`` of versions that have jobs (one query, one probe each).
    Registered with ``policies.hooks``."""
    has_jobs = Exists(Job.objects.filter(version_id=OuterRef("pk")))
    versions = Version.objects.filter(pk__in=list(version_ids)).filter(has_jobs)
    return set(versions.values_list("pk", flat=True))


def latest_finished_job(version: Version) -> Job | None:
    """The version's most recent succeeded job, whatever it compared and wherever it ran.

    Not the version's agreement (that is ``deciding_job``): finalize names it to explain why no
    job decides yet (too small, another comparison, another sample set).
    """
    jobs = Job.objects.filter(version=version, status=JobStatus.SUCCEEDED)
    return jobs.order_by(*_LATEST_FIRST).first()


def closest_job(version: Version) -> Job | None:
    """The job that came closest to deciding the version, to say why none decides.

    The largest succeeded twin job (by items labeled on both sides), on the evaluation set when
    there is one and a job ran on it, the latest of equals; without a twin job, the latest
    succeeded job of any kind. Never a small test run that happened to finish last.
    """
    twin = Job.objects.filter(
        version=version, status=JobStatus.SUCCEEDED, compare_kind=CompareKind.TWIN
    ).alias(labeled_both=Cast(KT("stats__n"), IntegerField()))
    sample_set = evaluation_set(version.policy)
    if sample_set is not None and twin.filter(sample_set=sample_set).exists():
        twin = twin.filter(sample_set=sample_set)
    largest = twin.order_by(F("labeled_both").desc(nulls_last=True), *_LATEST_FIRST)
    return largest.select_related("sample_set").first() or latest_finished_job(version)


def below_minimum_sample(job: Job, *, subject: str = "This job") -> str:
    """What the job page and finalize say of a finished twin job under the minimum sample;
    empty when the job is not one."""
    if job.status != JobStatus.SUCCEEDED or job.compare_kind != CompareKind.TWIN:
        return ""
    policy = job.version.policy
    n = int((job.stats or {}).get("n") or 0)
    if n >= policy.min_sample_size:
        return ""
    return (
        f"{subject} labeled {n:,} item{'s' if n != 1 else ''} on both sides; finalize needs "
        f"{policy.min_sample_size:,} (the policy's minimum sample): it cannot decide. Run it on a "
        "larger sample set, or an admin may lower the minimum sample in the settings."
    )


# Settings -----------------------------------------------------------------------------------


def passes_gate(stats: dict[str, Any], *, threshold: float, min_kappa: float) -> bool:
    """Whether a job's figures meet an agreement threshold and a minimum kappa."""
    p_o, kappa = stats.get("p_o"), stats.get("kappa")
    return p_o is not None and kappa is not None and p_o >= threshold and kappa >= min_kappa


@dataclass(frozen=True)
class NewlyPassing:
    version: Version
    job: Job

    @property
    def figures(self) -> str:
        stats = self.job.stats or {}
        kappa = stats.get("kappa")
        kappa_text = "undefined" if kappa is None else f"{kappa:.3f}"
        return f"agreement {pct(stats.get('p_o'))}, Cohen's kappa {kappa_text}"


@dataclass(frozen=True)
class GateLowering:
    """What lowering a policy's gate lets through: the lowered settings, as "old → new", and
    the versions not finalized whose deciding job fails today's gate and would pass the new."""

    lowered: list[str]
    newly_passing: list[NewlyPassing]


def gate_lowering(
    policy: Policy,
    *,
    agreement_threshold: float,
    min_kappa: float,
    min_sample_size: int,
    probe_gate: bool | None = None,
    regression_tolerance: float | None = None,
) -> GateLowering | None:
    """None unless the gate gets looser (that needs a confirmation): the threshold or the
    minimum kappa goes down, probe findings go from refusing to warning, or the regression
    tolerance goes up. ``newly_passing`` lists the versions the agreement gate would let through
    (probe findings and regressions are judged at finalize, against the version's own probe and
    the last finalized version)."""
    lowered = []
    if agreement_threshold < policy.agreement_threshold:
        lowered.append(
            f"agreement threshold {policy.threshold_display} → {percent_text(agreement_threshold)}"
        )
    if min_kappa < policy.min_kappa:
        lowered.append(
            f"minimum kappa {policy.min_kappa_display} → {setting_text('min_kappa', min_kappa)}"
        )
    if probe_gate is False and policy.probe_gate:
        lowered.append("probe findings at finalize refuse → warn")
    if regression_tolerance is not None and regression_tolerance > policy.regression_tolerance:
        lowered.append(
            "regression tolerance "
            f"{setting_text('regression_tolerance', policy.regression_tolerance)} → "
            f"{setting_text('regression_tolerance', regression_tolerance)}"
        )
    if not lowered:
        return None
    sample_set = evaluation_set(policy)
    passing: list[NewlyPassing] = []
    if sample_set is not None:
        versions = {v.pk: v for v in policy.versions.filter(finalized_at__isnull=True)}
        jobs = _measured(policy, min_sample_size).filter(
            sample_set=sample_set, version_id__in=list(versions)
        )
        latest: dict[int, Job] = {}
        for job in jobs.order_by("version_id", *_LATEST_FIRST):
            latest.setdefault(job.version_id, job)
        for version_id, job in sorted(latest.items(), key=lambda kv: versions[kv[0]].number):
            stats = job.stats or {}
            now = passes_gate(
                stats, threshold=policy.agreement_threshold, min_kappa=policy.min_kappa
            )
            then = passes_gate(stats, threshold=agreement_threshold, min_kappa=min_kappa)
            if then and not now:
                passing.append(NewlyPassing(version=versions[version_id], job=job))
    return GateLowering(lowered=lowered, newly_passing=passing)


def update_policy_settings(
    *,
    policy: Policy,
    agreement_threshold: float,
    min_sample_size: int,
    evaluation_set: SampleSet | None,
    by: User,
    min_kappa: float | None = None,
    probe_gate: bool | None = None,
    regression_tolerance: float | None = None,
    review_overlap: int | None = None,
) -> list[PolicySettingChange]:
    """Change a policy's gate settings and evaluation set; one audit row per change.

    The gate settings' rows are written by ``Policy.save`` (as from admin or the shell); the
    evaluation set's here. Choosing no evaluation set (``None``) returns to the automatic rule.
    When the minimum sample changes while the rule is automatic, the set the rule gives now is
    kept as chosen, so that a new minimum cannot silently move the comparison to another set.
    ``regression_tolerance`` None keeps the current one; a change is audited by ``Policy.save``
    like the other gate settings; so is ``review_overlap`` (None keeps it).
    """
    with transaction.atomic():
        # Locked until the end: the audit rows this call writes are the policy's after the
        # newest one now.
        Policy.objects.select_for_update().filter(pk=policy.pk).first()
        before = evaluation_choice(policy)
        audited = PolicySettingChange.objects.filter(policy=policy)
        newest_before = audited.aggregate(newest=Max("pk"))["newest"] or 0
        changed = policy_services.update_policy_settings(
            policy=policy,
            agreement_threshold=agreement_threshold,
            min_sample_size=min_sample_size,
            min_kappa=min_kappa,
            probe_gate=probe_gate,
            by=by,
            via=SettingPath.SETTINGS,
        )
        if regression_tolerance is not None:
            if not 0.0 <= regression_tolerance <= 1.0:
                raise ValueError("The regression tolerance must be between 0% and 100%.")
            if regression_tolerance != policy.regression_tolerance:
                policy.regression_tolerance = regression_tolerance
                policy.save(
                    update_fields=["regression_tolerance", "updated_at"],
                    changed_by=by,
                    via=SettingPath.SETTINGS,
                )
        if review_overlap is not None and review_overlap != policy.review_overlap:
            if not 1 <= review_overlap <= MAX_REVIEW_OVERLAP:
                raise ValueError(f"The review overlap must be from 1 to {MAX_REVIEW_OVERLAP}.")
            policy.review_overlap = review_overlap
            policy.save(
                update_fields=["review_overlap", "updated_at"],
                changed_by=by,
                via=SettingPath.SETTINGS,
            )
        wanted = evaluation_set
        if wanted is None and "min_sample_size" in changed and not before.chosen:
            wanted = before.sample_set
        row = PolicyEvaluation.objects.select_for_update().filter(policy=policy).first()
        current = row.sample_set if row else None
        if wanted != current:
            PolicyEvaluation.objects.update_or_create(
                policy=policy,
                defaults={"sample_set": wanted, "chosen_by": by, "chosen_at": timezone.now()},
            )
            PolicySettingChange.objects.create(
                policy=policy,
                field="evaluation_set",
                old_value=_set_name(current, before),
                new_value=_set_name(wanted, None),
                changed_by=by,
                via=SettingPath.SETTINGS,
            )
        return list(audited.filter(pk__gt=newest_before).order_by("pk"))


def _set_name(sample_set: SampleSet | None, choice: EvaluationChoice | None) -> str:
    if sample_set is not None:
        return f"{sample_set.name} (#{sample_set.pk})"[:300]
    if choice is not None and choice.sample_set is not None:
        return f"automatic: {choice.sample_set.name} (#{choice.sample_set.pk})"[:300]
    return "automatic"


def recent_setting_changes(policy: Policy, limit: int = 50) -> list[PolicySettingChange]:
    return list(
        PolicySettingChange.objects.filter(policy=policy)
        .select_related("changed_by")
        .order_by("-changed_at", "-id")[:limit]
    )
