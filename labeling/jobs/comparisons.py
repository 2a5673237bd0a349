"""Any two wordings on the same items: what side B of a binocular job is.

A job compares the version's text (A) with its twin, with another version of the same policy
("v4 vs v3": what did my edit change?), or with pasted text. ``Job.text_b`` freezes B's text
in every case; ``Job.compare_kind`` and ``Job.compare_version`` say what it was. Only twin
jobs can decide the chart and finalize (``evaluation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, FilteredRelation, Q

from labeling.agreement import Agreement, Confusion, agreement_from_confusion
from labeling.gold.services import with_gold
from labeling.jobs.errors import JobError
from labeling.jobs.evaluation import deciding_job
from labeling.models import CompareKind, Job, JobStatus, Label, Side
from labeling.scoring import GoldScore, score_from_counts
from policies.models import Policy, Version


def _normalised(text: str) -> str:
    return " ".join(text.split()).casefold()


def side_b(
    *, version: Version, compare_version: Version | None, compare_text: str | None
) -> tuple[str, str]:
    """``(compare kind, text B)`` for a job of ``version``; a JobError when meaningless."""
    if compare_version is not None and compare_text:
        raise JobError("Compare with another version or with pasted text, not both.")
    if compare_version is not None:
        if compare_version.policy_id != version.policy_id:
            raise JobError("Compare only with a version of the same policy.")
        if compare_version.pk == version.pk:
            raise JobError("A version compared with itself tells nothing: choose another one.")
        kind, text = CompareKind.VERSION, compare_version.text
    elif compare_text is not None and compare_text.strip():
        kind, text = CompareKind.PASTED, compare_text
    elif compare_text is not None:
        raise JobError("The pasted text to compare with is empty.")
    else:
        if not version.has_twin:
            raise JobError("This version has no twin yet: write or generate one before a job.")
        return CompareKind.TWIN, version.twin_text
    if _normalised(text) == _normalised(version.text):
        raise JobError(
            "Text B is the same as this version's text (ignoring spaces and case): every item "
            "would agree. Choose a different wording."
        )
    return kind, text


def side_b_name(job: Job) -> str:
    """What side B of the job was, in the words of the pages: "twin", "v3", "pasted text"."""
    if job.compare_kind == CompareKind.VERSION and job.compare_version is not None:
        return f"v{job.compare_version.number}"
    if job.compare_kind == CompareKind.PASTED:
        return "pasted text"
    return "twin"


# Two versions side by side -------------------------------------------------------------------


@dataclass(frozen=True)
class VersionComparison:
    """Two versions' jobs on the same sample set, scored on the items both labeled."""

    left_job: Job
    right_job: Job
    on_evaluation_set: bool
    common: int  # items labeled under A by both jobs
    left_score: GoldScore
    right_score: GoldScore
    agreement: Agreement  # left A against right A on the common items
    no_gold: int
    undecidable: int
    left_only_one: list[dict[str, Any]] = field(default_factory=list)  # left said 1, right 0
    right_only_one: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def _jobs_to_compare(left: Version, right: Version) -> tuple[Job | None, Job | None, bool]:
    lj, rj = deciding_job(left), deciding_job(right)
    if lj is not None and rj is not None:
        return lj, rj, True
    # No deciding job for one of them: the latest finished twin jobs of both on a common set.
    finished = Job.objects.filter(
        status=JobStatus.SUCCEEDED, compare_kind=CompareKind.TWIN
    ).order_by(F("finished_at").desc(nulls_last=True), F("id").desc())
    for job in finished.filter(version=left)[:20]:
        other = finished.filter(version=right, sample_set_id=job.sample_set_id).first()
        if other is not None:
            return job, other, False
    return lj, rj, False


def compare_versions(*, policy: Policy, left: Version, right: Version) -> VersionComparison | None:
    """Both versions' figures on the same items, and the items whose label flipped.

    One grouped query counts (gold, left label, right label) over the items both jobs labeled
    under A; two bounded queries list the first flips each way.
    """
    left_job, right_job, on_eval = _jobs_to_compare(left, right)
    if left_job is None or right_job is None or left_job.sample_set_id != right_job.sample_set_id:
        return None
    rows = (
        with_gold(Label.objects.filter(job=left_job, side=Side.A, label__isnull=False), policy.pk)
        .annotate(
            r=FilteredRelation(
                "item__labels",
                condition=Q(item__labels__job_id=right_job.pk, item__labels__side=Side.A),
            )
        )
        .annotate(r_label=F("r__label"))
        .filter(r_label__isnull=False)
    )
    counts = rows.values("gold", "label", "r_label").annotate(n=Count("id")).order_by()
    left_counts: dict[tuple[str | None, int | None], int] = {}
    right_counts: dict[tuple[str | None, int | None], int] = {}
    pair: dict[tuple[int | None, int | None], int] = {(1, 1): 0, (1, 0): 0, (0, 1): 0, (0, 0): 0}
    no_gold = undecidable = common = 0
    for row in counts:
        g, lab, rlab, n = row["gold"], row["label"], row["r_label"], row["n"]
        common += n
        left_counts[(g, lab)] = left_counts.get((g, lab), 0) + n
        right_counts[(g, rlab)] = right_counts.get((g, rlab), 0) + n
        pair[(lab, rlab)] = pair.get((lab, rlab), 0) + n
        no_gold += n if g is None else 0
        undecidable += n if g == "u" else 0
    shown = ("item_id", "item__external_id", "item__text", "p1", "gold")
    return VersionComparison(
        left_job=left_job,
        right_job=right_job,
        on_evaluation_set=on_eval,
        common=common,
        left_score=score_from_counts(left_counts),
        right_score=score_from_counts(right_counts),
        agreement=agreement_from_confusion(
            Confusion(pair[(1, 1)], pair[(1, 0)], pair[(0, 1)], pair[(0, 0)])
        ),
        no_gold=no_gold,
        undecidable=undecidable,
        left_only_one=list(
            rows.filter(label=1, r_label=0).order_by("item_id").values(*shown, "r__p1")[:FLIPS]
        ),
        right_only_one=list(
            rows.filter(label=0, r_label=1).order_by("item_id").values(*shown, "r__p1")[:FLIPS]
        ),
        note=""
        if on_eval
        else "Not on the policy's evaluation set: the latest finished jobs of both versions on "
        "a sample set they share.",
    )


FLIPS = 25
