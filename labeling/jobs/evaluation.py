"""Which job speaks for a version: the policy's evaluation set and each version's deciding job.

The chart and finalize read only the *deciding job* of a version: its latest job that

* succeeded (a partial, failed or cancelled job never decides),
* compared A with the version's own twin (a "v4 vs v3" or pasted-text comparison answers
  another question),
* ran on the policy's evaluation set, and
* labeled at least the policy's minimum sample on both sides (``stats["n"]``).

So a 1-item test run, or a run on another set, never moves the chart or finalize readiness.

The evaluation set is chosen once per policy (settings page). Until someone chooses one, it is
the first sample set on which a job of the policy reached the minimum sample: the first honest
measurement fixes where later versions are compared. The pages say which rule applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from labeling.models import (
    CompareKind,
    Job,
    JobStatus,
    PolicyEvaluation,
    PolicySettingChange,
    SampleSet,
)
from policies import services as policy_services
from policies.models import Policy, Version

# NULLs last: PostgreSQL sorts NULL first in a plain descending order, SQLite last.
_LATEST_FIRST = (F("finished_at").desc(nulls_last=True), F("id").desc())


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


def _qualifying_jobs(policy: Policy) -> QuerySet[Job]:
    return Job.objects.filter(
        version__policy=policy,
        status=JobStatus.SUCCEEDED,
        compare_kind=CompareKind.TWIN,
        stats__n__gte=policy.min_sample_size,
    )


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
    first = (
        _qualifying_jobs(policy)
        .order_by(F("finished_at").asc(nulls_last=True), "id")
        .select_related("sample_set")
        .first()
    )
    return EvaluationChoice(sample_set=first.sample_set if first else None, chosen=False)


def evaluation_set(policy: Policy) -> SampleSet | None:
    """The sample set the policy's versions are compared on (see the module docstring)."""
    return evaluation_choice(policy).sample_set


def _deciding_jobs_qs(policy: Policy, sample_set: SampleSet) -> QuerySet[Job]:
    return _qualifying_jobs(policy).filter(sample_set=sample_set)


def deciding_job(version: Version) -> Job | None:
    """The job that speaks for the version on the chart and for finalizing, or None."""
    policy = version.policy
    sample_set = evaluation_set(policy)
    if sample_set is None:
        return None
    return (
        _deciding_jobs_qs(policy, sample_set)
        .filter(version=version)
        .order_by(*_LATEST_FIRST)
        .first()
    )


def deciding_jobs(policy: Policy, versions: Iterable[Version]) -> dict[int, Job]:
    """``deciding_job`` of each of the policy's versions, by version id (two queries)."""
    sample_set = evaluation_set(policy)
    if sample_set is None:
        return {}
    ids = [v.pk for v in versions]
    latest: dict[int, Job] = {}
    jobs = _deciding_jobs_qs(policy, sample_set).filter(version_id__in=ids)
    for job in jobs.order_by("version_id", *_LATEST_FIRST):
        latest.setdefault(job.version_id, job)
    return latest


# Settings -----------------------------------------------------------------------------------


def update_policy_settings(
    *,
    policy: Policy,
    agreement_threshold: float,
    min_sample_size: int,
    evaluation_set: SampleSet | None,
    by: Any,
) -> list[PolicySettingChange]:
    """Change a policy's threshold, minimum sample and evaluation set; one audit row per change.

    Choosing no evaluation set (``None``) returns to the automatic rule. When the minimum
    sample changes while the rule is automatic, the set the rule gives now is kept as chosen,
    so that a new minimum cannot silently move the comparison to another set.
    """
    with transaction.atomic():
        before = evaluation_choice(policy)
        changed = policy_services.update_policy_settings(
            policy=policy,
            agreement_threshold=agreement_threshold,
            min_sample_size=min_sample_size,
        )
        audit = [
            PolicySettingChange(
                policy=policy,
                field=name,
                old_value=_shown(name, old),
                new_value=_shown(name, new),
                changed_by=by,
            )
            for name, (old, new) in changed.items()
        ]
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
            audit.append(
                PolicySettingChange(
                    policy=policy,
                    field="evaluation_set",
                    old_value=_set_name(current, before),
                    new_value=_set_name(wanted, None),
                    changed_by=by,
                )
            )
        PolicySettingChange.objects.bulk_create(audit)
    return audit


def _shown(name: str, value: Any) -> str:
    if name == "agreement_threshold":
        return f"{float(value) * 100:.1f}%"
    return str(value)


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
