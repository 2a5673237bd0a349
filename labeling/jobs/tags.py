"""A finished job's figures per item tag (a test pack's functionality or category, or a tag
column): per tag the items, the share of 1 under A and under B, the agreement of A and B, and,
where items have gold, each side's pass rate (its label matches the gold).

Each figure is the job page's own, per tag: the agreement and the shares of 1 come from
``agreement.agreement_from_confusion`` (items labeled on both sides), the pass rate is
``scoring.score_from_counts``' accuracy (0/1 gold against a 0/1 label), and gold is read through
``gold.services.with_gold`` (the one gold precedence).

Bounded: one grouped query over the job's A labels (each row's B label looked up by the
``label_unique`` index), whose result has a row per (tag, label A, label B, gold): at most 36
per tag. Which tags there are, and how many, the import counted (``SampleSet.report["tags"]``),
so a set without tags costs no query, and a set with more than ``TAGS_SHOWN`` tags is read for
its ``TAGS_SHOWN`` largest only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, OuterRef, Subquery

from labeling.agreement import Agreement, Confusion, agreement_from_confusion
from labeling.gold.services import with_gold
from labeling.jobs.display import pct
from labeling.models import Job, Label, SampleSet, Side
from labeling.scoring import GoldScore, score_from_counts

TAGS_SHOWN = 50  # as many as the import report lists (``report.TAGS_KEPT``)


@dataclass(frozen=True)
class TagRow:
    """One tag's figures."""

    tag: str
    n: int  # the job's items with this tag
    agreement: Agreement
    gold_a: GoldScore
    gold_b: GoldScore

    @property
    def share_a(self) -> str:
        return pct(self.agreement.positive_rate_a)

    @property
    def share_b(self) -> str:
        return pct(self.agreement.positive_rate_b)

    @property
    def agreement_pct(self) -> str:
        return pct(self.agreement.p_o)

    @property
    def pass_a(self) -> str:
        return pct(self.gold_a.accuracy)

    @property
    def pass_b(self) -> str:
        return pct(self.gold_b.accuracy)


@dataclass(frozen=True)
class TagBreakdown:
    rows: list[TagRow]
    source: str  # where the tags came from, in words
    distinct: int  # the set's distinct tags (the import counted them)
    more: bool  # more distinct tags than the import counted

    @property
    def capped(self) -> bool:
        return self.more or self.distinct > len(self.rows)

    @property
    def has_gold(self) -> bool:
        return any(r.gold_a.n or r.gold_b.n for r in self.rows)


def set_tags(sample_set: SampleSet) -> dict[str, Any] | None:
    """The import's count of the set's tags, or None when its items have none."""
    tags = (sample_set.report or {}).get("tags")
    if not isinstance(tags, dict) or not tags.get("distinct"):
        return None
    return tags


def _source(tags: dict[str, Any]) -> str:
    if tags.get("pack_name"):
        return f"the test pack ({tags['pack_name']})"
    return f"the column “{tags.get('column', '')}”"


def tag_breakdown(job: Job, *, limit: int = TAGS_SHOWN) -> TagBreakdown | None:
    """Per tag figures of a job that is no longer running, the largest ``limit`` tags by items
    first; None when the job runs or its set has no tags."""
    if job.is_active:
        return None
    tags = set_tags(job.sample_set)
    if tags is None:
        return None
    cells = _tag_cells(job, tags, limit)
    rows = [_tag_row(tag, tag_cells) for tag, tag_cells in cells.items()]
    rows.sort(key=lambda r: (-r.n, r.tag))
    return TagBreakdown(
        rows=rows[:limit],
        source=_source(tags),
        distinct=int(tags.get("distinct") or 0),
        more=bool(tags.get("more")),
    )


Cell = tuple[int | None, int | None, str | None]  # (label A, label B, gold)


def _tag_cells(job: Job, tags: dict[str, Any], limit: int) -> dict[str, dict[Cell, int]]:
    """``{tag: {(label A, label B, gold): items}}`` in one grouped query."""
    labels = Label.objects.filter(job=job, side=Side.A)
    largest = [t[0] for t in tags.get("largest") or []]
    if tags.get("more") or int(tags.get("distinct") or 0) > len(largest):
        # More tags than the report lists: read the largest only, the rest is not shown.
        labels = labels.filter(item__tag__in=largest[:limit])
    b_label = Label.objects.filter(job_id=job.pk, item_id=OuterRef("item_id"), side=Side.B)
    rows = (
        with_gold(labels, job.version.policy_id)
        .annotate(label_b=Subquery(b_label.values("label")[:1]))
        .exclude(item__tag="")
        .values("item__tag", "label", "label_b", "gold")
        .annotate(n=Count("id"))
        .order_by()
    )
    cells: dict[str, dict[Cell, int]] = defaultdict(dict)
    for row in rows:
        key = (row["label"], row["label_b"], row["gold"])
        tag_cells = cells[row["item__tag"]]
        tag_cells[key] = tag_cells.get(key, 0) + row["n"]
    return cells


def _tag_row(tag: str, cells: dict[Cell, int]) -> TagRow:
    both = {"a1b1": 0, "a1b0": 0, "a0b1": 0, "a0b0": 0}
    gold: dict[str, dict[tuple[str | None, int | None], int]] = {"A": {}, "B": {}}
    for (la, lb, g), n in cells.items():
        if la is not None and lb is not None:
            both[f"a{la}b{lb}"] += n
        for side, label in (("A", la), ("B", lb)):
            gold[side][(g, label)] = gold[side].get((g, label), 0) + n
    return TagRow(
        tag=tag,
        n=sum(cells.values()),
        agreement=agreement_from_confusion(Confusion(**both)),
        gold_a=score_from_counts(gold["A"]),
        gold_b=score_from_counts(gold["B"]),
    )


def tags_context(job: Job) -> dict[str, Any]:
    """What the job page's ``_tags.html`` partial reads."""
    return {"tag_breakdown": tag_breakdown(job)}
