"""Finalizing a version: which conditions its deciding job still misses, and the act itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied

from labeling.models import Job, ReviewStatus
from labeling.services import latest_finished_job
from policies import services as policy_services
from policies.models import Version


class NotReady(Exception):
    """Finalizing was asked for a version that does not meet the conditions yet."""

    def __init__(self, readiness: Readiness) -> None:
        super().__init__(" ".join(readiness.missing))
        self.readiness = readiness


@dataclass(frozen=True)
class Readiness:
    ok: bool
    missing: list[str]
    job: Job | None = None
    already_finalized: bool = False


def finalize_readiness(version: Version) -> Readiness:
    """Which of the finalizing conditions the version's latest finished job still misses."""
    policy = version.policy
    job = latest_finished_job(version)
    if version.is_finalized:
        return Readiness(
            ok=False, missing=["Version is already finalized."], job=job, already_finalized=True
        )
    if job is None:
        return Readiness(ok=False, missing=["Version has no finished job yet."])
    missing: list[str] = []
    stats = job.stats or {}
    # Agreement.to_dict() writes p_o as a fraction (0–1).
    agreement = stats.get("p_o")
    if agreement is None:
        missing.append(f"Job #{job.pk} has no agreement figure yet.")
    elif agreement < policy.agreement_threshold:
        missing.append(
            f"Agreement {agreement * 100:.1f}% is below the policy's threshold of "
            f"{policy.agreement_threshold * 100:.1f}%."
        )
    n = int(stats.get("n") or 0)
    if n < policy.min_sample_size:
        missing.append(
            f"Only {n} items labeled on both sides; the policy needs at least "
            f"{policy.min_sample_size}."
        )
    unreviewed = job.review_tasks.exclude(status=ReviewStatus.RESOLVED).count()
    if unreviewed:
        noun = "mismatch" if unreviewed == 1 else "mismatches"
        verb = "is" if unreviewed == 1 else "are"
        missing.append(f"{unreviewed} {noun} of job #{job.pk} {verb} not reviewed yet.")
    return Readiness(ok=not missing, missing=missing, job=job)


def finalize(*, version: Version, by: Any) -> Version:
    """Finalize the version if the user may and its latest finished job meets the conditions."""
    if not by.has_perm("policies.finalize_version"):
        raise PermissionDenied("Only admins can finalize a version.")
    readiness = finalize_readiness(version)
    if not readiness.ok:
        raise NotReady(readiness)
    return policy_services.finalize_version(version=version, by=by)
