"""The regression gate at finalize: a version against the policy's last finalized version.

Both versions' deciding jobs (the last finalized one's frozen job) labeled the evaluation set's
items under side A, the version's own text. On the items both labeled with a gold label (gold by
the one precedence, ``labeling.gold.services.with_gold``) the diff says which verdicts changed
from the old version to the new one, and of those which were *fixed* (the new label is the gold)
and which *broken* (the old one was); ``other`` changed where gold is "can't decide" or absent.
Gold figures come from ``labeling.scoring`` (``score_from_counts``): F1, recall of 1 (TPR) and
recall of 0 (TNR, the recall of the class "0"), before (last finalized) -> after (this version).

A drop (before - after) beyond ``Policy.regression_tolerance`` in F1 or in either class's recall
refuses finalize unless an admin gives a reason (``labeling.release.finalize``). With no
finalized version before it, or when either version has no deciding job, there is no gate and
the diff says why.

Reads are bounded: one grouped count over the two jobs' side-A labels, then the changed items
of each kind capped at ``LIST_CAP`` (three small reads), whatever the size of the set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery

from labeling.gold.services import with_gold
from labeling.jobs.evaluation import deciding_job
from labeling.models import Job, Label, Side
from labeling.scoring import GoldScore, score_from_counts
from policies.models import Version, percent_text

# Changed items kept per kind (fixed, broken, other) in the diff and the evidence.
LIST_CAP = 200
# A drop is only a drop beyond float noise.
_EPSILON = 1e-9
FIGURES = (("f1", "gold F1"), ("recall_1", "recall of 1"), ("recall_0", "recall of 0"))


def recall_0(score: GoldScore) -> float | None:
    """Recall of the class 0 (true negative rate): ``tn / (tn + fp)``, undefined without a gold
    0. The issue's "recall per label" of a binary answer is recall of 1 and recall of 0."""
    gold_zero = score.tn + score.fp
    return score.tn / gold_zero if gold_zero else None


def figures_of(score: GoldScore) -> dict[str, Any]:
    """A side's gold figures as the diff, the evidence and the bundle keep them."""
    return {
        **score.to_dict(),
        "recall_1": score.recall,
        "recall_0": recall_0(score),
    }


def drops_of(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """before - after of each gated figure (> 0 is worse); an undefined side drops nothing."""
    out: dict[str, float] = {}
    for key, _ in FIGURES:
        old, new = before.get(key), after.get(key)
        out[key] = round(old - new, 6) if old is not None and new is not None else 0.0
    return out


def exceeded(drops: Mapping[str, float], tolerance: float) -> list[str]:
    """The gated figures whose drop is beyond the tolerance, as "gold F1 fell 0.20"."""
    return [
        f"{name} fell {percent_text(drops[key])}"
        for key, name in FIGURES
        if drops.get(key, 0.0) > tolerance + _EPSILON
    ]


@dataclass(frozen=True)
class Regression:
    """The diff of a version against its baseline, or why there is none (``note``)."""

    baseline: Version | None
    note: str = ""  # why there is no gate ("" when compared)
    old_job: Job | None = None
    new_job: Job | None = None
    tolerance: float = 0.0
    n: int = 0  # gold (0/1) items both jobs labeled
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    drops: dict[str, float] = field(default_factory=dict)
    changed: dict[str, Any] = field(default_factory=dict)

    @property
    def compared(self) -> bool:
        return self.old_job is not None and self.new_job is not None

    @property
    def failures(self) -> list[str]:
        return exceeded(self.drops, self.tolerance) if self.compared else []

    @property
    def refused(self) -> bool:
        return bool(self.failures)

    @property
    def changed_gold_ids(self) -> list[int]:
        """The changed items with a 0/1 gold, broken first (what the clause run explains)."""
        rows = [*self.changed.get("broken", []), *self.changed.get("fixed", [])]
        return [int(r["item"]) for r in rows]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the finalize evidence and the bundle."""
        base = self.baseline
        return {
            "baseline": (
                {
                    "version_id": base.pk,
                    "number": base.number,
                    "finalized_at": base.finalized_at.isoformat() if base.finalized_at else None,
                    "job_id": self.old_job.pk if self.old_job else None,
                }
                if base is not None
                else None
            ),
            "job_id": self.new_job.pk if self.new_job else None,
            "note": self.note,
            "tolerance": self.tolerance,
            "n": self.n,
            "before": self.before,
            "after": self.after,
            "drops": self.drops,
            "changed": self.changed,
            "refused": self.refused,
        }


def baseline_of(version: Version) -> Version | None:
    """The policy's last version finalized before this one (by ``finalized_at``)."""
    finalized = Version.objects.filter(
        policy_id=version.policy_id, finalized_at__isnull=False
    ).exclude(pk=version.pk)
    if version.finalized_at is not None:
        finalized = finalized.filter(finalized_at__lt=version.finalized_at)
    return finalized.order_by("-finalized_at", "-pk").first()


def _job_of(version: Version) -> Job | None:
    """The job a version was finalized on (frozen), else its deciding job today."""
    frozen = Job.objects.filter(version=version, frozen_at__isnull=False).order_by("-pk").first()
    return frozen or deciding_job(version)


def _pairs(old_job: Job, new_job: Job, policy_id: int) -> QuerySet[Any]:
    """Side-A labels of the new job, each with the old job's label of the item and its gold."""
    old_label = Label.objects.filter(job_id=old_job.pk, side=Side.A, item_id=OuterRef("item_id"))
    labels = Label.objects.filter(job_id=new_job.pk, side=Side.A, label__isnull=False)
    return (
        with_gold(labels, policy_id)
        .annotate(old=Subquery(old_label.values("label")[:1], output_field=IntegerField()))
        .filter(old__isnull=False)
    )


def _counts(pairs: QuerySet[Any]) -> dict[tuple[str | None, int, int], int]:
    """{(gold, old label, new label): items}, one grouped read."""
    rows = pairs.values("gold", "old", "label").annotate(k=Count("id")).order_by()
    return {(r["gold"], r["old"], r["label"]): r["k"] for r in rows}


def _changed_rows(pairs: QuerySet[Any], kind: str) -> list[dict[str, Any]]:
    changed = pairs.exclude(old=F("label"))
    if kind == "fixed":
        changed = changed.filter(Q(gold="1", label=1) | Q(gold="0", label=0))
    elif kind == "broken":
        changed = changed.filter(Q(gold="1", old=1) | Q(gold="0", old=0))
    else:
        changed = changed.exclude(gold__in=("0", "1"))
    rows = changed.order_by("item_id").values(
        "item_id", "item__external_id", "old", "label", "gold"
    )
    return [
        {
            "item": r["item_id"],
            "external_id": r["item__external_id"],
            "before": r["old"],
            "after": r["label"],
            "gold": r["gold"] or "",
        }
        for r in rows[:LIST_CAP]
    ]


def _split(counts: Mapping[tuple[str | None, int, int], int]) -> tuple[GoldScore, GoldScore]:
    """The old and the new labels' scores against gold, from the grouped counts."""
    before: dict[tuple[str | None, int | None], int] = {}
    after: dict[tuple[str | None, int | None], int] = {}
    for (gold, old, new), k in counts.items():
        before[(gold, old)] = before.get((gold, old), 0) + k
        after[(gold, new)] = after.get((gold, new), 0) + k
    return score_from_counts(before), score_from_counts(after)


def _changed_counts(counts: Mapping[tuple[str | None, int, int], int]) -> dict[str, int]:
    out = {"fixed_count": 0, "broken_count": 0, "other_count": 0}
    for (gold, old, new), k in counts.items():
        if old == new:
            continue
        if gold not in ("0", "1"):
            out["other_count"] += k
        elif str(new) == gold:
            out["fixed_count"] += k
        else:
            out["broken_count"] += k
    return out


def compare(version: Version, job: Job | None = None) -> Regression:
    """The version against the policy's last finalized version before it (see the module).
    ``job``: the version's deciding job when the caller has it already."""
    policy = version.policy
    baseline = baseline_of(version)
    if baseline is None:
        return Regression(
            baseline=None,
            note="No version of this policy was finalized before this one: there is nothing "
            "to compare with, so no regression gate.",
        )
    old_job, new_job = _job_of(baseline), job or _job_of(version)
    missing = [v for v, j in ((baseline, old_job), (version, new_job)) if j is None]
    if old_job is None or new_job is None:
        names = " and ".join(f"v{v.number}" for v in missing)
        return Regression(
            baseline=baseline,
            note=f"{names} has no deciding job on the evaluation set: the gold verdicts cannot "
            f"be compared with v{baseline.number}, so no regression gate.",
        )
    pairs = _pairs(old_job, new_job, policy.pk)
    counts = _counts(pairs)
    old_score, new_score = _split(counts)
    before, after = figures_of(old_score), figures_of(new_score)
    changed: dict[str, Any] = _changed_counts(counts)
    for kind in ("fixed", "broken", "other"):
        changed[kind] = _changed_rows(pairs, kind) if changed[f"{kind}_count"] else []
    note = (
        ""
        if old_score.n
        else f"Job #{old_job.pk} and job #{new_job.pk} share no item with a 0/1 gold label: "
        "nothing to compare, so no regression gate."
    )
    return Regression(
        baseline=baseline,
        note=note,
        old_job=old_job,
        new_job=new_job,
        tolerance=policy.regression_tolerance,
        n=old_score.n,
        before=before,
        after=after,
        drops=drops_of(before, after),
        changed=changed,
    )


def refusal_message(diff: Regression, *, names: int = 10) -> str:
    """Why finalize refuses: the figures that fell and the broken items by their ids."""
    base = diff.baseline
    assert base is not None
    broken = diff.changed.get("broken", [])
    shown = ", ".join(str(r["external_id"]) for r in broken[:names])
    more = diff.changed.get("broken_count", 0) - min(len(broken), names)
    tail = f" and {more} more" if more > 0 else ""
    items = f" Broken against gold: {shown}{tail}." if shown else ""
    return (
        f"Against v{base.number}, the last finalized version, on {diff.n} gold items: "
        + "; ".join(diff.failures)
        + f", beyond the policy's regression tolerance of {percent_text(diff.tolerance)}."
        + items
        + " Fix the wording, raise the tolerance in the settings, or an admin may finalize "
        "anyway with a stated reason."
    )
