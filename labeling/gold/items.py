"""A job's per-item results: one row per item with both labels, gold and the review decision.

Pages are keyset-paginated on the item id (``after`` / ``before``), so a page costs the same at
item 100,000 as at item 1: the query walks the ``label_unique`` (job, item, side) index from
the cursor and stops after one page. The page says how many items match its filters with one
count that stops after ``COPE_QUEUE_COUNT_CAP`` rows (shown as "1000+"), as the review queue
does; a single page that holds every match needs no count at all.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.utils.text import slugify
from django_stubs_ext import WithAnnotations

from labeling.explain.pages import ROLE_DECIDES, ROLES, parse_clause_value
from labeling.gold.services import GoldFields, add_item_fields, no_jit, with_gold_lookups
from labeling.models import ExplainFinding, Job, Label, ReviewTask, Side
from labeling.search.content import matching_ids_sql
from labeling.search.query import parse

PAGE_SIZE = 50
_COLUMNS = (
    "item_id",
    "label",
    "p1",
    "error",
    "label_b",
    "p1_b",
    "error_b",
    "gold",
    "gold_source",
)


class RowFields(GoldFields):
    label_b: int | None
    p1_b: float | None
    error_b: str | None


ItemRow: TypeAlias = "WithAnnotations[Label, RowFields]"
"""Side A's label row of an item, with side B's label and the gold (``job_rows``)."""


def job_rows(job: Job) -> QuerySet[ItemRow]:
    """One row per item of the job: side A's label row, with side B's label and the gold
    looked up per row (index lookups on ``label_unique`` and ``gold_label_unique``).

    Lookups, not joins: with joins PostgreSQL plans merge joins that read every item before
    the cursor; with per-row lookups a page reads the label index from the cursor and stops
    once it has a page (or, under a rare filter, at the end of the job).
    """
    side_b = Label.objects.filter(job_id=job.pk, side=Side.B, item_id=OuterRef("item_id"))
    rows = with_gold_lookups(Label.objects.filter(job=job, side=Side.A), job.version.policy_id)
    return rows.annotate(
        label_b=Subquery(side_b.values("label")[:1]),
        p1_b=Subquery(side_b.values("p1")[:1]),
        error_b=Subquery(side_b.values("error")[:1]),
    )


def apply_filters(
    rows: QuerySet[ItemRow], filters: dict[str, Any], *, sample_set_id: int | None = None
) -> QuerySet[ItemRow]:
    """Narrow the rows by the items page's filters (``ItemFilterForm.cleaned_data``); the
    text filter needs the job's ``sample_set_id`` and searches the full-text index."""
    query = parse(filters.get("q") or "")
    if query and sample_set_id is not None:
        sql, params = matching_ids_sql(query, sample_set_id=sample_set_id)
        rows = rows.filter(item_id__in=RawSQL(sql, params))
    if filters.get("mismatch"):
        rows = rows.filter(label__isnull=False, label_b__isnull=False).exclude(label=F("label_b"))
    wrong = filters.get("wrong") or ""
    gold01 = Q(gold__in=["0", "1"])
    a_fp, a_fn = Q(label=1, gold="0"), Q(label=0, gold="1")
    b_fp, b_fn = Q(label_b=1, gold="0"), Q(label_b=0, gold="1")
    wrong_q = {
        "a": a_fp | a_fn,
        "b": b_fp | b_fn,
        "either": a_fp | a_fn | b_fp | b_fn,
        "a_fp": a_fp,
        "a_fn": a_fn,
        "b_fp": b_fp,
        "b_fn": b_fn,
    }.get(wrong)
    if wrong_q is not None:
        rows = rows.filter(gold01).filter(wrong_q)
    elif wrong == "no_gold":
        rows = rows.filter(gold__isnull=True)
    said = filters.get("said") or ""
    said_q = {
        "a": Q(label=1),
        "b": Q(label_b=1),
        "both": Q(label=1, label_b=1),
        "only_a": Q(label=1, label_b=0),
        "only_b": Q(label=0, label_b=1),
        "none": Q(label=0, label_b=0),
    }.get(said)
    if said_q is not None:
        rows = rows.filter(said_q)
    margin = filters.get("margin")
    if margin is not None:
        low, high = 0.5 - margin, 0.5 + margin
        rows = rows.filter(Q(p1__gt=low, p1__lt=high) | Q(p1_b__gt=low, p1_b__lt=high))
    clause = parse_clause_value(filters.get("clause") or "")
    if clause is not None:
        # A lookup per row on ``explain_finding_unique`` (job, item, side, role, clause).
        side, key = clause
        roles = ROLES.get(filters.get("role") or ROLE_DECIDES, ROLES[ROLE_DECIDES])
        found = ExplainFinding.objects.filter(
            job_id=OuterRef("job_id"),
            item_id=OuterRef("item_id"),
            side=side,
            role__in=roles,
            clause=key,
        )
        rows = rows.filter(Exists(found))
    return rows


@dataclass(frozen=True)
class ItemPage:
    rows: list[dict[str, Any]]
    next_after: int | None  # cursor of the next page, None on the last
    prev_before: int | None  # cursor of the previous page, None on the first
    is_first: bool


@dataclass(frozen=True)
class MatchCount:
    """How many items match the filters, counted up to ``cap`` (then shown as "cap+")."""

    n: int
    cap: int

    @property
    def over_cap(self) -> bool:
        return self.n > self.cap


def match_count(job: Job, filters: dict[str, Any], page: ItemPage) -> MatchCount:
    """Items matching ``filters`` (the cursor aside): one count that reads at most ``cap + 1``
    rows; none when the first page already holds every match."""
    cap = int(settings.COPE_QUEUE_COUNT_CAP)
    if page.is_first and page.next_after is None:
        return MatchCount(len(page.rows), cap)
    rows = apply_filters(
        job_rows(job), {**filters, "after": None, "before": None}, sample_set_id=job.sample_set_id
    )
    with no_jit():
        n = rows.order_by().values("id")[: cap + 1].count()
    return MatchCount(n, cap)


_WRONG_SLUGS = {
    "a": "wrong-side-a",
    "b": "wrong-side-b",
    "either": "wrong-either-side",
    "a_fp": "false-positives-side-a",
    "a_fn": "false-negatives-side-a",
    "b_fp": "false-positives-side-b",
    "b_fn": "false-negatives-side-b",
    "no_gold": "no-gold",
}
_SAID_SLUGS = {
    "a": "a-said-1",
    "b": "b-said-1",
    "both": "both-said-1",
    "only_a": "only-a-said-1",
    "only_b": "only-b-said-1",
    "none": "neither-said-1",
}

_ROLE_SLUGS = {"decides": "decided-by", "necessary": "necessary", "gold_miss": "gold-miss-by"}


def csv_filename(job: Job, filters: dict[str, Any]) -> str:
    """``job-12-items.csv``, with the filters in the name: ``job-12-items-mismatches-
    false-positives-side-a-margin-0.1-decided-by-a-labelha1includes1.csv`` (validated choices,
    a clause slugified, so the name is safe)."""
    parts = [f"job-{job.pk}-items"]
    if filters.get("mismatch"):
        parts.append("mismatches")
    parts.append(_WRONG_SLUGS.get(filters.get("wrong") or "", ""))
    parts.append(_SAID_SLUGS.get(filters.get("said") or "", ""))
    margin = filters.get("margin")
    if margin is not None:
        parts.append(f"margin-{float(margin):g}")
    clause = parse_clause_value(filters.get("clause") or "")
    if clause is not None:
        role = filters.get("role") or ROLE_DECIDES
        parts.append(_ROLE_SLUGS.get(role, _ROLE_SLUGS[ROLE_DECIDES]))
        parts.append(slugify(f"{clause[0]} {clause[1]}"))
    return "-".join(p for p in parts if p) + ".csv"


def item_page(job: Job, filters: dict[str, Any], *, size: int | None = None) -> ItemPage:
    """One page of the job's rows after ``filters["after"]`` or before ``filters["before"]``."""
    with no_jit():
        return _item_page(job, filters, size or PAGE_SIZE)


def _item_page(job: Job, filters: dict[str, Any], size: int) -> ItemPage:
    rows = apply_filters(job_rows(job), filters, sample_set_id=job.sample_set_id).values(*_COLUMNS)
    after, before = filters.get("after"), filters.get("before")
    if before is not None:
        page = list(rows.filter(item_id__lt=before).order_by("-item_id")[: size + 1])
        more_before = len(page) > size
        page = page[:size][::-1]
        has_next, has_prev = True, more_before
    else:
        if after is not None:
            rows = rows.filter(item_id__gt=after)
        page = list(rows.order_by("item_id")[: size + 1])
        has_next = len(page) > size
        page = page[:size]
        has_prev = after is not None
    page = _with_decisions(job, page)
    return ItemPage(
        rows=page,
        next_after=page[-1]["item_id"] if page and has_next else None,
        prev_before=page[0]["item_id"] if page and has_prev else None,
        is_first=not has_prev,
    )


def _with_decisions(job: Job, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their item's text and id, and their review task and decision in this job
    (two queries per page)."""
    rows = add_item_fields(page)
    ids = [r["item_id"] for r in rows]
    tasks = {
        t["item_id"]: t
        for t in ReviewTask.objects.filter(job=job, item_id__in=ids).values(
            "item_id", "status", "decision__label", "decision__wording"
        )
    }
    for row in rows:
        task = tasks.get(row["item_id"])
        row["review_status"] = task["status"] if task else ""
        row["decision"] = task["decision__label"] if task else None
        row["margin"] = _margin(row["p1"], row["p1_b"])
        # Formatted here, not with template filters: a page of 50 rows stays a few ms.
        row["p1_shown"] = "—" if row["p1"] is None else f"{row['p1']:.3f}"
        row["p1_b_shown"] = "—" if row["p1_b"] is None else f"{row['p1_b']:.3f}"
        row["mismatch"] = (
            row["label"] is not None
            and row["label_b"] is not None
            and row["label"] != row["label_b"]
        )
        text = row["item__text"]
        row["text_shown"] = text if len(text) <= 400 else text[:399] + "…"
    return rows


def _margin(p_a: float | None, p_b: float | None) -> float | None:
    known = [abs(p - 0.5) for p in (p_a, p_b) if p is not None]
    return min(known) if known else None


# CSV ----------------------------------------------------------------------------------------

CSV_HEADER = [
    "item_id",
    "external_id",
    "text",
    "label_a",
    "p1_a",
    "error_a",
    "label_b",
    "p1_b",
    "error_b",
    "gold",
    "gold_source",
    "review_status",
    "decision",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def guard_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading '."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(job: Job, filters: dict[str, Any], *, chunk: int = 2000) -> Iterator[str]:
    """The job's filtered rows as CSV lines, read in keyset chunks (memory stays flat)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    base = apply_filters(
        job_rows(job), {**filters, "after": None, "before": None}, sample_set_id=job.sample_set_id
    )
    after = 0
    while True:
        with no_jit():
            rows = list(
                base.filter(item_id__gt=after).order_by("item_id").values(*_COLUMNS)[:chunk]
            )
        if not rows:
            return
        for r in _with_decisions(job, rows):
            yield writer.writerow(
                guard_cell(v)
                for v in (
                    r["item_id"],
                    r["item__external_id"],
                    r["item__text"],
                    r["label"],
                    r["p1"],
                    r["error"],
                    r["label_b"],
                    r["p1_b"],
                    r["error_b"],
                    r["gold"],
                    r["gold_source"],
                    r["review_status"],
                    r["decision"],
                )
            )
        after = rows[-1]["item_id"]
