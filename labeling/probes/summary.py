"""What pages, the finalize gate and the bundle read about a version's probes.

Every function here reads runs and their ``summary`` JSON (written once when a run finishes),
never score rows: one or two queries whatever the size of the probe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery

from labeling.models import ExplainRun, ExplainStatus, RunKind
from policies.models import Policy, Version

FINISHED = (ExplainStatus.SUCCEEDED, ExplainStatus.PARTIAL)


def _probes(version: Version | OuterRef) -> QuerySet[ExplainRun]:
    return ExplainRun.objects.filter(version=version, kind=RunKind.PROBE, job__isnull=True)


def latest_probe(version: Version) -> ExplainRun | None:
    """The version's newest probe run, whatever its status (progress, errors)."""
    return _probes(version).order_by("-attempt").first()


def version_probe(version: Version) -> ExplainRun | None:
    """THE probe of a version: its newest probe run that finished succeeded or partial.
    Everything shown or gated reads this one."""
    return _probes(version).filter(status__in=FINISHED).order_by("-attempt").first()


@dataclass(frozen=True)
class ProbeFindings:
    """A version's probe conclusions as the finalize panel and gate read them."""

    run: ExplainRun | None
    leakage_share: float | None = None
    leakage_over: bool = False  # share above COPE_PROBE_MAX_LEAKAGE
    dead: list[dict[str, Any]] = field(default_factory=list)  # the summary's clause dicts
    warnings: list[str] = field(default_factory=list)  # sentences for the finalize panel
    refuse: bool = False  # warnings and the policy's probe gate is on


def findings_from_summary(
    run: ExplainRun | None, summary: dict[str, Any], *, gate: bool
) -> ProbeFindings:
    """The findings of one summary (``COPE_PROBE_MAX_LEAKAGE``; ``gate``: the policy's
    ``probe_gate``)."""
    if run is None or not summary:
        return ProbeFindings(run=run)
    limit = float(settings.COPE_PROBE_MAX_LEAKAGE)
    leakage = summary.get("leakage") or {}
    share = leakage.get("share")
    over = isinstance(share, int | float) and share > limit
    dead = [c for c in summary.get("clauses", []) if c.get("status") == "dead"]
    warnings = []
    if over:
        warnings.append(
            f"Topic leakage: {leakage.get('count', 0)} of {leakage.get('n', 0)} items "
            f"({100 * float(share or 0):.1f}%) are still labeled 1 under an off-topic policy, "
            f"above the limit of {100 * limit:.1f}% (COPE_PROBE_MAX_LEAKAGE): the model may be "
            "answering the topic, not the text."
        )
    if dead:
        names = ", ".join(c.get("where") or c.get("key", "") for c in dead[:10])
        more = f" and {len(dead) - 10} more" if len(dead) > 10 else ""
        warnings.append(
            f"{len(dead)} dead clause{'s' if len(dead) != 1 else ''}: removing "
            f"{'it' if len(dead) == 1 else 'any of them'} moves no label on the probe's items "
            f"({names}{more}). Redundant, or ignored by the model."
        )
    return ProbeFindings(
        run=run,
        leakage_share=share,
        leakage_over=over,
        dead=dead,
        warnings=warnings,
        refuse=bool(warnings) and gate,
    )


def probe_findings(version: Version) -> ProbeFindings:
    """The version's probe findings (``version_probe``); no probe: no findings, no refusal."""
    run = version_probe(version)
    gate = bool(Policy.objects.filter(pk=version.policy_id).values_list("probe_gate", flat=True)
                .first())  # fmt: skip
    return findings_from_summary(run, run.summary if run else {}, gate=gate)


def steerability_series(policy: Policy) -> dict[int, dict[str, Any]]:
    """{version id: its ``version_probe``'s ``summary["steerability"]``} for the policy's
    versions that have one (the chart across versions): one query, a row per version."""
    newest = (
        _probes(OuterRef("pk")).filter(status__in=FINISHED).order_by("-attempt").values("pk")[:1]
    )
    runs = ExplainRun.objects.filter(
        pk__in=Version.objects.filter(policy=policy)
        .annotate(probe=Subquery(newest))
        .values("probe")
    ).values_list("version_id", "summary")
    return {
        version_id: summary["steerability"]
        for version_id, summary in runs
        if isinstance(summary, dict) and summary.get("steerability")
    }
