"""Exports of a policy with its evidence: Markdown, JSON bundle, training JSONL, per-item CSV.

- Markdown: a finalized version's text byte for byte as CoPE reads it in the POLICY slot (the
  twin, on request, as a second file).
- JSON bundle (``BUNDLE_FORMAT``, ``format_version``): the policy and every version's texts and
  history; a finalized version carries the evidence frozen at finalize (``job_evidence``).
  ``policies.bundle.import_bundle`` reads it back.
- Training JSONL: one ``{"policy", "content", "label"}`` row per gold-labelled item per version.
- Per-item CSV of a finalized version's deciding job.

The JSONL is a generator over server-side cursors (``iterator``) and the CSV is the items page's
writer (keyset chunks): a job of a million labels streams in constant memory. The bundle
streams one version at a time. Gold figures come from ``labeling.gold``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict

from django.db.models import CharField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from django_stubs_ext import WithAnnotations

from labeling.agreement import ac1_of
from labeling.gold import items
from labeling.gold.services import job_gold_report
from labeling.jobs.evaluation import evaluation_set
from labeling.models import Decision, GoldChoice, GoldLabel, Item, Job, Label, ReviewStatus, Side
from labeling.scoring import FEW_GOLD
from policies.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION
from policies.models import Policy, Version, percent_text, setting_text

# 2: the agreement carries Gwet's AC1 and the evidence the gate it was judged by.
EVIDENCE_VERSION = 2
_ITER_CHUNK = 2000


class ExportError(Exception):
    """An export that cannot be made as asked; the message says why."""


# --- gold --------------------------------------------------------------------------------------


def gold_metrics(job: Job) -> dict[str, Any] | None:
    """Accuracy, precision, recall, F1 and confusion of each side against gold
    (``labeling.gold.services.job_gold_report``); None when no item of the job has a 0/1 gold
    label."""
    report = job_gold_report(job)
    if not report.has_gold:
        return None
    sides = {
        side: {
            **figures.score.to_dict(),
            "no_gold": figures.no_gold,
            "undecidable": figures.undecidable,
            "unlabeled": figures.unlabeled,
        }
        for side, figures in report.sides.items()
    }
    few = report.gold_items < FEW_GOLD
    note = f"fewer than {FEW_GOLD} gold items: read these figures with care" if few else ""
    return {
        "A": sides.get(Side.A),
        "B": sides.get(Side.B),
        "gold_items": report.gold_items,
        "note": note,
    }


def items_sha256(job: Job) -> str:
    """sha256 over the sorted content hashes of the job's items, one per line.

    Two jobs labeled the same contents get the same hash, whatever the item ids or order.
    """
    digest = hashlib.sha256()
    hashes = (
        Label.objects.filter(job=job, side=Side.A)
        .order_by("item__content_hash", "item_id")
        .values_list("item__content_hash", flat=True)
    )
    for content_hash in hashes.iterator(chunk_size=_ITER_CHUNK):
        digest.update(content_hash.encode() + b"\n")
    return digest.hexdigest()


_AGREEMENT_KEYS = (
    "n", "agree", "disagree", "p_o", "kappa", "kappa_note", "ci_low", "ci_high",
    "positive_rate_a", "positive_rate_b", "excluded_count",
)  # fmt: skip


def job_evidence(job: Job, *, override_reason: str = "") -> dict[str, Any]:
    """What justified finalizing: frozen on the version at finalize, carried by every export.

    ``gate``: the policy's threshold, minimum kappa and minimum sample at finalize, so the
    record says what the figures were judged by even after the settings change.
    """
    stats = job.stats or {}
    policy = job.version.policy
    reviewed = job.review_tasks.filter(status=ReviewStatus.RESOLVED).count()
    agreement = {key: stats.get(key) for key in _AGREEMENT_KEYS}
    agreement["ac1"] = ac1_of(stats)
    return {
        "evidence_version": EVIDENCE_VERSION,
        "job_id": job.pk,
        "sample_set": {"name": job.sample_set.name, "item_count": job.sample_set.item_count},
        "items": job.item_count,
        "items_sha256": items_sha256(job),
        "backend": job.backend,
        "model_id": job.model_id,
        "model_revision": job.model_revision,
        "device": job.device,
        "weak_backend": job.is_weak,
        "agreement": agreement,
        "gate": {
            "agreement_threshold": policy.agreement_threshold,
            "min_kappa": policy.min_kappa,
            "min_sample_size": policy.min_sample_size,
        },
        "gold": gold_metrics(job),
        "reviewed_mismatches": reviewed,
        "job_finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "override_reason": override_reason,
    }


def gate_text(evidence: dict[str, Any]) -> str:
    """The gate a finalize was judged by, as the pages write it ("" for older evidence)."""
    gate = (evidence or {}).get("gate")
    if not isinstance(gate, dict):
        return ""
    return (
        f"agreement ≥ {percent_text(gate['agreement_threshold'])}, Cohen's kappa ≥ "
        f"{setting_text('min_kappa', gate['min_kappa'])}, at least "
        f"{int(gate['min_sample_size']):,} items"
    )


# --- Markdown ----------------------------------------------------------------------------------


def finalized_version(policy: Policy, number: int | None = None) -> Version:
    """Version ``number`` (it must be finalized), or the policy's latest finalized version."""
    versions = policy.versions.select_related("author", "finalized_by", "parent")
    if number is not None:
        version = versions.filter(number=number).first()
        if version is None:
            raise ExportError(f"{policy.name} has no version {number}.")
    else:
        version = versions.filter(finalized_at__isnull=False).order_by("-number").first()
        if version is None:
            raise ExportError(
                f"{policy.name} has no finalized version: finalize one, or export the bundle."
            )
    if not version.is_finalized:
        raise ExportError(
            f"{version} is not finalized: only a finalized version is exported as final."
        )
    return version


def filename(policy: Policy, version: Version | None, extension: str, suffix: str = "") -> str:
    number = f"-v{version.number}" if version is not None else ""
    return f"{policy.slug}{number}{suffix}.{extension}"


# --- JSON bundle -------------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _version_entry(version: Version) -> dict[str, Any]:
    return {
        "number": version.number,
        "parent_number": version.parent.number if version.parent else None,
        "text": version.text,
        "twin_text": version.twin_text,
        "twin_origin": version.twin_origin,
        "twin_model": version.twin_model,
        "twin_prompt": version.twin_prompt,
        "twin_similarity": version.twin_similarity,
        "twin_warnings": version.twin_warnings,
        "twin_updated_at": _iso(version.twin_updated_at),
        "change_note": version.change_note,
        "author": version.author.get_username(),
        "created_at": _iso(version.created_at),
        "finalized_at": _iso(version.finalized_at),
        "finalized_by": version.finalized_by.get_username() if version.finalized_by else None,
        "finalize_override": version.finalize_override,
        "finalize_evidence": version.finalize_evidence or None,
        # Where a version imported here came from, and the source's finalize it carries:
        # provenance a later export keeps, never this studio's finalize.
        "imported": (
            {
                "from": version.imported_from,
                "finalized_at": _iso(version.imported_finalized_at),
                "finalized_by": version.imported_finalized_by or None,
                "evidence": version.imported_evidence or None,
            }
            if version.imported_from
            else None
        ),
    }


def bundle_header(policy: Policy) -> dict[str, Any]:
    sample_set = evaluation_set(policy)
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "policy": {
            "name": policy.name,
            "slug": policy.slug,
            "description": policy.description,
            "agreement_threshold": policy.agreement_threshold,
            "min_sample_size": policy.min_sample_size,
            "min_kappa": policy.min_kappa,
            "probe_gate": policy.probe_gate,
            "regression_tolerance": policy.regression_tolerance,
            "evaluation_set": (
                {"name": sample_set.name, "item_count": sample_set.item_count}
                if sample_set is not None
                else None
            ),
            "created_at": _iso(policy.created_at),
        },
    }


def iter_bundle(policy: Policy) -> Iterator[str]:
    """The bundle as JSON text, one version at a time (``{..., "versions": [...]}``)."""
    header = json.dumps(bundle_header(policy), indent=2, ensure_ascii=False)
    yield header[:-2] + ',\n  "versions": ['
    versions = policy.versions.select_related("author", "finalized_by", "parent").order_by("number")
    for i, version in enumerate(versions.iterator(chunk_size=50)):
        entry = json.dumps(_version_entry(version), indent=2, ensure_ascii=False)
        yield ("," if i else "") + "\n    " + entry.replace("\n", "\n    ")
    yield "\n  ]\n}\n"


def bundle(policy: Policy) -> dict[str, Any]:
    """The whole bundle as a dict (tests, and small policies)."""
    data: dict[str, Any] = json.loads("".join(iter_bundle(policy)))
    return data


# --- training JSONL ----------------------------------------------------------------------------


@dataclass
class TrainingSummary:
    rows: int = 0
    versions: int = 0
    contradictory_contents: int = 0  # contents with gold 0 under one version and 1 under another
    by_label: dict[str, int] = field(default_factory=lambda: {"0": 0, "1": 0})

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "versions": self.versions,
            "by_label": self.by_label,
            "contradictory_pairs": self.contradictory_contents,
        }


class _VersionGold(TypedDict):
    gold: str


def _version_gold_items(version: Version) -> QuerySet[WithAnnotations[Item, _VersionGold]]:
    """Items labeled in any job of ``version``, with their gold under that version.

    A reviewer's decision in a job of this version is its gold under this version (the wording
    is what the reviewer judged against); without one, the policy's gold label, else the
    import's expected label.
    """
    decided = Decision.objects.filter(
        task__job__version=version, task__item_id=OuterRef("pk")
    ).order_by("-created_at", "-pk")
    policy_gold = GoldLabel.objects.filter(policy_id=version.policy_id, item_id=OuterRef("pk"))
    labeled = Label.objects.filter(job__version=version, side=Side.A).values("item_id")
    return (
        Item.objects.filter(pk__in=labeled)
        .annotate(
            gold=Coalesce(
                Subquery(decided.values("label")[:1], output_field=CharField()),
                Subquery(policy_gold.values("label")[:1], output_field=CharField()),
                Cast("expected_label", output_field=CharField()),
            )
        )
        .filter(gold__in=[GoldChoice.NO, GoldChoice.YES])
        .order_by("pk")
    )


def iter_training_jsonl(policy: Policy, summary: TrainingSummary) -> Iterator[str]:
    """One JSON line per gold-labelled item per version; ``summary`` is filled as it goes.

    The same content with opposite gold under two versions keeps both rows (that contrast is
    what contradictory-example training learns from) and is counted in the summary.
    """
    seen: dict[str, int] = {}  # content hash -> bit 1: gold 0 seen, bit 2: gold 1 seen
    for version in policy.versions.order_by("number").only("pk", "text", "policy_id"):
        summary.versions += 1
        rows = _version_gold_items(version).values_list("text", "content_hash", "gold")
        written: set[tuple[str, str]] = set()
        for text, content_hash, gold in rows.iterator(chunk_size=_ITER_CHUNK):
            if (content_hash, gold) in written:
                continue  # a duplicate content in the set: one row per version is enough
            written.add((content_hash, gold))
            before = seen.get(content_hash, 0)
            after = before | (1 if gold == GoldChoice.NO else 2)
            if after == 3 and before != 3:
                summary.contradictory_contents += 1
            seen[content_hash] = after
            summary.rows += 1
            summary.by_label[gold] += 1
            row = {"policy": version.text, "content": text, "label": gold}
            yield json.dumps(row, ensure_ascii=False) + "\n"


# --- per-item CSV ------------------------------------------------------------------------------


def iter_job_csv(job: Job) -> Iterator[str]:
    """The deciding job's items as on its items page (its writer: keyset chunks, cells
    that start like a spreadsheet formula quoted)."""
    return items.csv_lines(job, {})


def deciding_job_of(version: Version) -> Job:
    """The frozen deciding job of a finalized version (an imported version has none here)."""
    job = Job.objects.select_related("sample_set", "version").filter(
        version=version, frozen_at__isnull=False
    )
    found = job.first()
    if found is None:
        raise ExportError(
            f"{version} has no deciding job in this studio (it was imported, or finalized "
            "before deciding jobs were frozen): its evidence is in the JSON bundle."
        )
    return found
