"""Gold audit: the gold labels a job's two wordings confidently contradict.

Bad gold caps F1 quietly. When A and B give an item the same label, both confidently
(``|p(1) − 0.5| ≥ COPE_GOLD_AUDIT_MARGIN`` on each side), and the item's gold says the other
label, the gold is more likely wrong than both models: the item is a **suspected gold error**.
Gold is read through ``with_gold_lookups`` (the one definition of gold precedence); "policy
can't decide" is not a 0/1 gold and is never suspected; a label without ``p1`` (an error)
never counts.

A reviewer confirms the gold or corrects it (``resolve_suspect``) through ``set_gold`` with
the ``audit`` source, so the gold history records who, when, old → new and a note. Gold from
the audit source has been looked at with this evidence, so it is never suspected again; a
later typed label or review decision replaces it and may be.

Reads are bounded: the count stops after ``COPE_QUEUE_COUNT_CAP`` suspects (shown as
"1000+"), and the list is keyset-paged on the item id, as the items page is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Abs

from labeling.explain import pages as explain_pages
from labeling.explain import summary as explain_summary
from labeling.explain.dispatch import ACTIVE
from labeling.explain.services import ExplainError, explain_max_items, start_explain
from labeling.gold.items import MatchCount
from labeling.gold.services import (
    GoldError,
    GoldLabelled,
    add_item_fields,
    no_jit,
    set_gold,
    with_gold_lookups,
)
from labeling.models import (
    ExplainFinding,
    ExplainItem,
    ExplainRun,
    ExplainVerdict,
    FindingRole,
    GoldLabel,
    GoldSource,
    Item,
    Job,
    Label,
    RunKind,
    SampleSet,
    Side,
)
from worker.clauses import Clause

PAGE_SIZE = 50
CONFIRM, CORRECT = "confirm", "correct"
CONFIRM_NOTE = "confirmed in the gold audit"
CORRECT_NOTE = "corrected in the gold audit"
TEXT_SHOWN = 600  # characters of an item's content shown on the list


def audit_margin() -> float:
    return float(settings.COPE_GOLD_AUDIT_MARGIN)


def suspects(job: Job, *, margin: float | None = None) -> QuerySet[GoldLabelled]:
    """Side A's label rows of the job's suspected gold errors (not ordered).

    A's own columns are tested first (a plain read of the row); B's agreeing, confident label
    is one lookup on ``label_unique`` and the gold two more (``with_gold_lookups``), so the
    cost is that of walking the job's labels, whatever the policy's other gold."""
    m = audit_margin() if margin is None else margin
    half = Value(0.5)
    confident_b = (
        Label.objects.filter(
            job_id=job.pk,
            side=Side.B,
            item_id=OuterRef("item_id"),
            label=OuterRef("label"),
            p1__isnull=False,
        )
        .annotate(margin_b=Abs(F("p1") - half))
        .filter(margin_b__gte=m)
    )
    confident_a = (
        Label.objects.filter(job=job, side=Side.A, label__isnull=False, p1__isnull=False)
        .annotate(margin_a=Abs(F("p1") - half))
        .filter(margin_a__gte=m)
        .filter(Exists(confident_b))
    )
    rows = with_gold_lookups(confident_a, job.version.policy_id)
    return rows.filter(Q(label=1, gold="0") | Q(label=0, gold="1")).exclude(
        gold_source=GoldSource.AUDIT
    )


def suspect_count(job: Job) -> MatchCount:
    """How many suspects the job has, counted up to ``COPE_QUEUE_COUNT_CAP`` (one query that
    stops after ``cap + 1`` rows)."""
    cap = int(settings.COPE_QUEUE_COUNT_CAP)
    with no_jit():
        n = suspects(job).order_by().values("id")[: cap + 1].count()
    return MatchCount(n, cap)


@dataclass(frozen=True)
class SuspectPage:
    rows: list[dict[str, Any]]
    next_after: int | None  # cursor of the next page, None on the last
    is_first: bool


def suspect_page(job: Job, *, after: int | None = None, size: int | None = None) -> SuspectPage:
    """One page of suspects after item ``after``, each with its content, both p(1), who set
    its gold and when, and the clauses attribution found necessary for A's label (six
    queries, whatever the job's size)."""
    size = size or PAGE_SIZE
    side_b = Label.objects.filter(job_id=job.pk, side=Side.B, item_id=OuterRef("item_id"))
    rows = suspects(job).annotate(p1_b=Subquery(side_b.values("p1")[:1]))
    if after is not None:
        rows = rows.filter(item_id__gt=after)
    with no_jit():
        found = list(
            rows.order_by("item_id").values(
                "item_id", "label", "p1", "p1_b", "gold", "gold_source"
            )[: size + 1]
        )
    has_next = len(found) > size
    page = add_item_fields(found[:size])
    ids = [r["item_id"] for r in page]
    setters, importer = _gold_setters(job, ids)
    clauses, explained = necessary_clauses(job, ids)
    for row in page:
        _decorate(row, setters, importer, clauses, explained)
    return SuspectPage(
        rows=page,
        next_after=page[-1]["item_id"] if page and has_next else None,
        is_first=after is None,
    )


@dataclass(frozen=True)
class GoldSetter:
    by: str
    at: datetime | None


def _gold_setters(job: Job, ids: list[int]) -> tuple[dict[int, GoldSetter], GoldSetter]:
    """Who set the gold and when: per item for a gold row, and the sample set's importer for
    the import's expected label (two queries)."""
    rows = GoldLabel.objects.filter(policy_id=job.version.policy_id, item_id__in=ids).values_list(
        "item_id", "decided_by__username", "updated_at"
    )
    by, at = SampleSet.objects.filter(pk=job.sample_set_id).values_list(
        "created_by__username", "created_at"
    )[0]
    return {pk: GoldSetter(name, when) for pk, name, when in rows}, GoldSetter(by, at)


def necessary_clauses(job: Job, ids: list[int]) -> tuple[dict[int, list[Clause]], set[int]]:
    """``({item id: A's clauses whose removal flips A's label, largest effect first},
    the items an explain run concluded on)`` for the given items (two queries)."""
    concluded = explain_summary.deciding_clauses(job, ids)
    explained = {pk for pk, row in concluded.items() if row.verdict != ExplainVerdict.FAILED}
    texts = explain_pages.clauses_by_key(job.text_a)
    found = (
        ExplainFinding.objects.filter(
            job=job, item_id__in=ids, side=Side.A, role=FindingRole.NECESSARY
        )
        .order_by("item_id", "rank")
        .values_list("item_id", "clause")
    )
    clauses: dict[int, list[Clause]] = {}
    for item_id, key in found:
        clause = texts.get(key)
        if clause is not None:
            clauses.setdefault(item_id, []).append(clause)
    return clauses, explained


def _decorate(
    row: dict[str, Any],
    setters: dict[int, GoldSetter],
    importer: GoldSetter,
    clauses: dict[int, list[Clause]],
    explained: set[int],
) -> None:
    item_id = row["item_id"]
    text = row["item__text"]
    row["text_shown"] = text if len(text) <= TEXT_SHOWN else text[: TEXT_SHOWN - 1] + "…"
    row["p1_shown"] = f"{row['p1']:.3f}"
    row["p1_b_shown"] = "—" if row["p1_b"] is None else f"{row['p1_b']:.3f}"
    row["models_say"] = str(row["label"])
    if row["gold_source"] == GoldSource.IMPORT:
        row["gold_set"] = importer
    else:
        row["gold_set"] = setters.get(item_id, GoldSetter("", None))
    row["clauses"] = [
        {"name": c.name, "where": c.where, "lines": f"{c.start_line}-{c.end_line}", "text": c.text}
        for c in clauses.get(item_id, [])
    ]
    row["explained"] = item_id in explained


def resolve_suspect(*, job: Job, item: Item, action: str, shown_gold: str, by: Any) -> GoldLabel:
    """Confirm the gold the reviewer saw (same label, now from the audit) or correct it to the
    other label, through ``set_gold``, which records the change in the gold history. Raises
    ``GoldError`` when the gold is no longer what the reviewer saw."""
    if shown_gold not in ("0", "1") or action not in (CONFIRM, CORRECT):
        raise GoldError("A gold audit confirms or corrects a 0/1 gold label.")
    label = shown_gold if action == CONFIRM else ("1" if shown_gold == "0" else "0")
    return set_gold(
        policy=job.version.policy,
        item=item,
        label=label,
        source=GoldSource.AUDIT,
        by=by,
        note=CONFIRM_NOTE if action == CONFIRM else CORRECT_NOTE,
        expected=shown_gold,
    )


def explaining(job: Job) -> bool:
    """Whether an explain run of the job is queued or running (one query)."""
    return ExplainRun.objects.filter(job=job, kind=RunKind.ATTRIBUTION, status__in=ACTIVE).exists()


def unexplained_suspects(job: Job, limit: int) -> list[int]:
    """The first ``limit`` suspects no explain run concluded on (a failed one counts as not
    explained), by item id."""
    concluded = ExplainItem.objects.filter(job_id=job.pk, item_id=OuterRef("item_id")).exclude(
        verdict=ExplainVerdict.FAILED
    )
    with no_jit():
        return list(
            suspects(job)
            .filter(~Exists(concluded))
            .order_by("item_id")
            .values_list("item_id", flat=True)[: max(0, limit)]
        )


def explain_suspects(job: Job, by: Any) -> ExplainRun:
    """Start an explain run over the suspects not explained yet (up to
    ``COPE_EXPLAIN_MAX_ITEMS``), so the list can show the clause behind each. Raises
    ``ExplainError`` while a run is active or when none is left."""
    if explaining(job):
        raise ExplainError(
            "An explain run of this job is still going; wait for it or cancel it on the job page."
        )
    ids = unexplained_suspects(job, explain_max_items())
    if not ids:
        raise ExplainError("Every suspected gold error of this job is explained already.")
    return start_explain(job, by, item_ids=ids)
