"""Finalizing a version: which conditions its deciding job still misses, and the act itself.

The *deciding job* is ``labeling.jobs.evaluation.deciding_job``: the version's latest succeeded twin
job on the policy's evaluation set that labeled at least the minimum sample. Finalize refuses,
each time saying which condition failed, when

* there is no deciding job (no job on the evaluation set, too small, another comparison);
* its agreement is below the policy's threshold, its Cohen's kappa below the policy's minimum
  (undefined kappa included: agreement beyond chance cannot be shown), or a mismatch is not
  reviewed;
* its labels come from a weak backend (the CPU baseline), unless an admin states a reason;
* the policy text or its twin is over CoPE's token budget with the prompt template;
* the twin is nearly a copy of the text (fewer words changed than ``COPE_TWIN_MIN_CHANGED_WORDS``);
* the version's probe (``labeling.probes.summary.probe_findings``) shows topic leakage above
  ``COPE_PROBE_MAX_LEAKAGE`` or dead clauses and the policy's ``probe_gate`` is on (refuse),
  unless an admin states a reason; with the gate off the findings are warnings only;
* against the policy's last finalized version, gold F1 or either class's recall dropped by more
  than the policy's ``regression_tolerance`` (``labeling.release.regression``), unless an admin
  states a reason.

The weak backend, the probe gate and the regression gate are the conditions an admin may
override with a stated reason (kept as the version's ``finalize_override`` and in its
evidence); every other one holds.

Finalizing freezes the deciding job: in one transaction, with the version and job rows locked,
the version gets its finalized time, override reason and evidence (the deciding job's, the
probe's conclusions beside it: ``probe_evidence``, and the regression diff with the clause
deciding each changed item where known: ``regression_evidence``), and the job its
``frozen_at``.
``labeling.jobs`` then ignores late results and refuses retries on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from labeling.agreement import ac1_of
from labeling.jobs.evaluation import (
    below_minimum_sample,
    closest_job,
    deciding_job,
    evaluation_set,
)
from labeling.models import CompareKind, Job, JobStatus, ReviewStatus
from labeling.notify.events import version_finalized
from labeling.probes.summary import ProbeFindings, probe_findings
from labeling.release import regression_run
from labeling.release.exports import job_evidence
from labeling.release.regression import Regression, compare, refusal_message
from policies import services as policy_services
from policies.models import Policy, Version
from policies.tokens import count_policy_tokens


class NotReady(Exception):
    """Finalizing was asked for a version that does not meet the conditions yet."""

    def __init__(self, readiness: Readiness) -> None:
        super().__init__(" ".join(readiness.missing))
        self.readiness = readiness


@dataclass(frozen=True)
class GateFigures:
    """The deciding job's figures beside the gate they are judged by, for the panel."""

    p_o: float | None
    kappa: float | None
    ac1: float | None
    n: int
    threshold: float
    min_kappa: float
    min_sample: int

    @classmethod
    def of(cls, job: Job, policy: Policy) -> GateFigures:
        stats = job.stats or {}
        return cls(
            p_o=stats.get("p_o"),
            kappa=stats.get("kappa"),
            ac1=ac1_of(stats),
            n=int(stats.get("n") or 0),
            threshold=policy.agreement_threshold,
            min_kappa=policy.min_kappa,
            min_sample=policy.min_sample_size,
        )

    @property
    def agreement_ok(self) -> bool:
        return self.p_o is not None and self.p_o >= self.threshold

    @property
    def kappa_ok(self) -> bool:
        return self.kappa is not None and self.kappa >= self.min_kappa


@dataclass(frozen=True)
class Readiness:
    ok: bool
    missing: list[str]
    job: Job | None = None
    figures: GateFigures | None = None
    already_finalized: bool = False
    # The deciding job's labels come from a weak backend, or the probe gate refuses: the
    # conditions an admin may override with a stated reason. ``overridable`` is True when the
    # missing conditions are only those.
    weak: bool = False
    overridable: bool = False
    probe: ProbeFindings | None = None
    probe_refused: bool = False
    # Probe findings under a gate that warns: shown, never blocking.
    warnings: list[str] = field(default_factory=list)
    # The diff against the last finalized version (None without a deciding job), and whether
    # its drops are beyond the policy's tolerance (overridable like the two above).
    regression: Regression | None = None
    regression_refused: bool = False


def weak_message(job: Job) -> str:
    return (
        f"Job #{job.pk} was labeled by the CPU baseline ({job.backend or 'weak backend'}), not "
        "CoPE: its agreement says little about how CoPE reads the policy. Run the job on a CoPE "
        "worker, or an admin may finalize anyway with a stated reason."
    )


def _no_deciding_job(version: Version) -> list[str]:
    """Why the version has no deciding job, naming the job that came closest (its largest twin
    job, not whichever test run finished last)."""
    policy = version.policy
    sample_set = evaluation_set(policy)
    closest = closest_job(version)
    where = (
        f"the evaluation set “{sample_set.name}”"
        if sample_set is not None
        else "an evaluation set (none is chosen yet)"
    )
    if closest is None:
        return [
            f"Version has no finished job yet: run a job comparing it with its twin on {where} "
            f"with at least {policy.min_sample_size:,} items."
        ]
    if closest.compare_kind != CompareKind.TWIN:
        return [
            f"Job #{closest.pk} compared v{version.number} with "
            f"{closest.get_compare_kind_display()}, not with its twin: only a twin job can "
            "decide a finalize."
        ]
    too_small = below_minimum_sample(closest, subject=f"Job #{closest.pk}")
    if too_small:
        return [too_small]
    if sample_set is not None and closest.sample_set_id != sample_set.pk:
        return [
            f"Job #{closest.pk} ran on “{closest.sample_set.name}”, not on {where}: only a job "
            "on the evaluation set can decide a finalize."
        ]
    return [f"Version has no succeeded job on {where}."]


def _text_problems(version: Version) -> list[str]:
    missing: list[str] = []
    for what, text in (("policy text", version.text), ("twin", version.twin_text)):
        if not text.strip():
            continue
        tokens = count_policy_tokens(text)
        if tokens.over_budget:
            missing.append(
                f"The {what} uses {tokens.display} of CoPE's {tokens.limit:,} with the prompt "
                "template, before any content: CoPE cannot read it. Shorten it."
            )
    closeness = policy_services.twin_closeness(version.text, version.twin_text)
    if closeness is not None and closeness.nearly_copy:
        missing.append(
            f"The twin is nearly a copy of the text: {closeness.percent:.1f}% of words changed, "
            f"below the floor of {closeness.floor_percent:.0f}%, so agreement is flattering. "
            "Write a twin that rewords the text (a new version)."
        )
    return missing


def probe_message(findings: ProbeFindings) -> str:
    return (
        "The policy's probe gate refuses a version whose probe shows topic leakage or dead "
        "clauses: " + " ".join(findings.warnings) + " Write a version that fixes them, turn the "
        "gate to warn in the settings, or an admin may finalize anyway with a stated reason."
    )


def finalize_readiness(version: Version) -> Readiness:
    """Which of the finalizing conditions the version's deciding job still misses."""
    policy = version.policy
    job = deciding_job(version)
    if version.is_finalized:
        frozen = Job.objects.filter(version=version, frozen_at__isnull=False).first()
        return Readiness(
            ok=False,
            missing=["Version is already finalized."],
            job=frozen or job,
            already_finalized=True,
        )
    missing = _text_problems(version)
    findings = probe_findings(version)
    refused = bool(findings.refuse)
    warnings = [] if refused else list(findings.warnings)
    probe_missing = [probe_message(findings)] if refused else []
    if job is None:
        missing = _no_deciding_job(version) + missing + probe_missing
        return Readiness(
            ok=False,
            missing=missing,
            probe=findings,
            probe_refused=refused,
            warnings=warnings,
        )
    figures = GateFigures.of(job, policy)
    ac1 = "" if figures.ac1 is None else f" (Gwet's AC1 {figures.ac1:.3f})"
    if figures.p_o is None:
        missing.append(f"Job #{job.pk} has no agreement figure yet.")
    elif not figures.agreement_ok:
        missing.append(
            f"Agreement {figures.p_o * 100:.1f}% is below the policy's threshold of "
            f"{policy.threshold_display}."
        )
    if figures.kappa is None:
        note = (job.stats or {}).get("kappa_note") or "undefined"
        missing.append(
            f"Cohen's kappa of job #{job.pk} is {note}: agreement beyond chance cannot be shown, "
            f"and finalize needs kappa of at least {policy.min_kappa_display}{ac1}."
        )
    elif not figures.kappa_ok:
        missing.append(
            f"Cohen's kappa {figures.kappa:.3f} is below the policy's minimum of "
            f"{policy.min_kappa_display}{ac1}: the two wordings agree little beyond what chance "
            "gives, whatever the percent agreement."
        )
    unreviewed = job.review_tasks.exclude(status=ReviewStatus.RESOLVED).count()
    if unreviewed:
        noun = "mismatch" if unreviewed == 1 else "mismatches"
        verb = "is" if unreviewed == 1 else "are"
        missing.append(f"{unreviewed} {noun} of job #{job.pk} {verb} not reviewed yet.")
    weak = job.is_weak
    diff = compare(version, job)
    regression_missing = [refusal_message(diff)] if diff.refused else []
    overridable_lines = probe_missing + regression_missing + ([weak_message(job)] if weak else [])
    hard = bool(missing)
    missing += overridable_lines
    return Readiness(
        ok=not missing,
        missing=missing,
        job=job,
        figures=figures,
        weak=weak,
        overridable=bool(overridable_lines) and not hard,
        probe=findings,
        probe_refused=refused,
        warnings=warnings,
        regression=diff,
        regression_refused=diff.refused,
    )


def regression_evidence(readiness: Readiness, version: Version) -> dict[str, Any] | None:
    """The regression diff as frozen at finalize (None without a deciding job): the figures,
    the changed items (capped) with the clause deciding each where the regression run found
    one, the run and whether the gate was overridden."""
    diff = readiness.regression
    if diff is None:
        return None
    data = diff.to_dict()
    run = (
        regression_run.latest_run(version, diff.baseline)
        if diff.baseline is not None and diff.compared
        else None
    )
    data["changed"] = regression_run.with_clauses(diff.changed, run)
    data["run_id"] = run.pk if run is not None else None
    data["overridden"] = readiness.regression_refused
    return data


def probe_evidence(readiness: Readiness, policy: Policy) -> dict[str, Any] | None:
    """The version's probe as frozen with it at finalize (None when it was never probed):
    its figures (the run's summary), the findings and whether the gate warned or refused."""
    findings = readiness.probe
    run = findings.run if findings is not None else None
    if findings is None or run is None:
        return None
    return {
        "run_id": run.pk,
        "attempt": run.attempt,
        "status": run.status,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "backend": run.backend,
        "model_id": run.model_id,
        "weak_backend": run.is_weak,
        "summary": run.summary,
        "warnings": list(findings.warnings),
        "max_leakage": settings.COPE_PROBE_MAX_LEAKAGE,
        "gate": "refuse" if policy.probe_gate else "warn",
        "overridden": readiness.probe_refused,
    }


def finalize(
    *, version: Version, by: User, override_reason: str = "", job_id: int | None = None
) -> Version:
    """Finalize the version and freeze its deciding job, if the user may and every condition
    holds (a weak backend only with ``override_reason``). ``job_id``: the deciding job the admin
    saw; if another job decides now, nothing happens."""
    if not by.has_perm("policies.finalize_version"):
        raise PermissionDenied("Only admins can finalize a version.")

    override_reason = override_reason.strip()
    with transaction.atomic():
        # Lock the version, then the job: a concurrent finalize waits here and then finds the
        # version finalized; a late chunk result waits for the job lock and then finds it frozen.
        locked = Version.objects.select_for_update().select_related("policy").get(pk=version.pk)
        readiness = finalize_readiness(locked)
        job = readiness.job
        if job is not None and not readiness.already_finalized:
            job = Job.objects.select_for_update().get(pk=job.pk)
            if job.status != JobStatus.SUCCEEDED or job.frozen_at is not None:
                readiness = finalize_readiness(locked)  # changed under us: say what it is now
        if job_id is not None and job is not None and job.pk != job_id:
            raise NotReady(
                Readiness(
                    ok=False,
                    missing=[f"Job #{job.pk} decides now, not job #{job_id}; check it first."],
                    job=job,
                )
            )
        if not readiness.ok and not (readiness.overridable and override_reason):
            if readiness.overridable:
                missing = [*readiness.missing, "No override reason was given."]
                readiness = replace(readiness, missing=missing)
            raise NotReady(readiness)
        assert job is not None
        # The reason is kept only when a condition was overridden with it.
        reason = override_reason if readiness.overridable else ""
        evidence = job_evidence(job, override_reason=reason)
        evidence["probe"] = probe_evidence(readiness, locked.policy)
        evidence["regression"] = regression_evidence(readiness, locked)
        finalized = policy_services.finalize_version(
            version=locked, by=by, override_reason=reason, evidence=evidence
        )
        frozen = Job.objects.filter(pk=job.pk, frozen_at__isnull=True).update(
            frozen_at=timezone.now()
        )
        if frozen != 1:
            raise NotReady(
                Readiness(ok=False, missing=[f"Job #{job.pk} is already frozen."], job=job)
            )
        version_finalized(version=finalized, by=by)
    return finalized
