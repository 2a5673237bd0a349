"""Review notes: what reviewers said about a job's mismatches, grouped by the clause an explain
run found deciding each mismatch (reviewers' quotes beside it) and by the clause they quoted,
one page at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from django.core.paginator import Page, Paginator
from django.db.models import Case, Count, F, Min, Q, QuerySet, Value, When, Window
from django.db.models.functions import Lower, RowNumber
from django.utils.http import urlencode

from labeling.explain.pages import ComputedGroup, computed_groups
from labeling.models import Decision, GoldChoice, Job, ReviewStatus, Wording

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

NOTES_GROUPS_PER_PAGE = 20
NOTES_SAMPLES_PER_GROUP = 3
NOTES_DECISIONS_PER_PAGE = 25


@dataclass
class ClauseGroup:
    quote: str  # "" for decisions without a quoted clause
    key: str  # the quote case-folded: what groups decisions together
    count: int
    carried: int = 0
    decisions: list[Decision] = field(default_factory=list)  # the newest few

    @property
    def more(self) -> int:
        return self.count - len(self.decisions)

    @property
    def query(self) -> str:
        """``clause=<key>`` for a link that opens this clause's decisions."""
        return urlencode({"clause": self.key})


@dataclass
class ReviewNotes:
    job: Job
    groups: list[ClauseGroup]  # this page's groups
    decided: int
    carried: int
    open_tasks: int
    wording_counts: dict[str, int]
    label_counts: dict[str, int]
    page: Page[Any] | None = None  # the page of clause groups
    clause: ClauseGroup | None = None  # one clause opened, with a page of its decisions
    clause_page: Page[Any] | None = None
    computed: list[ComputedGroup] = field(default_factory=list)  # by computed deciding clause


def _clause_key(quote: str) -> str:
    return " ".join(quote.split()).casefold()


class _Keyed(TypedDict):
    key: str  # the quote, lower-cased by the database: what groups decisions together


def _job_decisions(job: Job) -> QuerySet[WithAnnotations[Decision, _Keyed]]:
    return Decision.objects.filter(task__job=job).annotate(key=Lower("quote"))


def _totals(job: Job) -> ReviewNotes:
    """The job's notes without their groups: decision counts by wording and label."""
    totals = Decision.objects.filter(task__job=job).aggregate(
        decided=Count("id"),
        carried=Count("id", filter=Q(task__carried_over=True)),
        **{f"w_{c.value}": Count("id", filter=Q(wording=c.value)) for c in Wording},
        **{f"l_{c.value}": Count("id", filter=Q(label=c.value)) for c in GoldChoice},
    )
    return ReviewNotes(
        job=job,
        groups=[],
        decided=totals["decided"],
        carried=totals["carried"],
        open_tasks=job.review_tasks.exclude(status=ReviewStatus.RESOLVED).count(),
        wording_counts={str(c.label): totals[f"w_{c.value}"] for c in Wording},
        label_counts={str(c.label): totals[f"l_{c.value}"] for c in GoldChoice},
    )


class _ClauseRow(TypedDict):
    key: str
    n: int
    quote_shown: str
    n_carried: int
    unquoted: int


def _clause_rows(job: Job, *, key: str | None = None) -> QuerySet[Any, _ClauseRow]:
    """One row per quoted clause (``key``), most-quoted first, the unquoted last; with ``key``,
    that clause's row alone."""
    decisions = _job_decisions(job)
    if key is not None:
        decisions = decisions.filter(key=key)
    return (
        decisions.values("key")
        .annotate(
            n=Count("id"),
            quote_shown=Min("quote"),
            n_carried=Count("id", filter=Q(task__carried_over=True)),
            unquoted=Case(When(key="", then=Value(1)), default=Value(0)),
        )
        .order_by("unquoted", "-n", "key")
    )


def _group(row: _ClauseRow) -> ClauseGroup:
    return ClauseGroup(
        quote=row["quote_shown"], key=row["key"], count=row["n"], carried=row["n_carried"]
    )


def _open_clause(notes: ReviewNotes, clause: str, page: int) -> None:
    """One clause's group with a page of its decisions, newest first (none if nobody quoted it)."""
    key = _clause_key(clause)
    row = _clause_rows(notes.job, key=key).first()
    if row is None:
        return
    decisions = (
        _job_decisions(notes.job)
        .filter(key=key)
        .select_related("task__item", "reviewer")
        .order_by("-created_at", "-id")
    )
    notes.clause = _group(row)
    notes.clause_page = Paginator(decisions, NOTES_DECISIONS_PER_PAGE).get_page(page)
    notes.clause.decisions = list(notes.clause_page.object_list)


def _page_of_groups(notes: ReviewNotes, page: int) -> None:
    """A page of clause groups, each with its newest few decisions (one window query)."""
    notes.page = Paginator(_clause_rows(notes.job), NOTES_GROUPS_PER_PAGE).get_page(page)
    groups = {row["key"]: _group(row) for row in notes.page.object_list}
    samples = (
        _job_decisions(notes.job)
        .filter(key__in=list(groups))
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[Lower("quote")], order_by=[F("created_at").desc()]
            )
        )
        .filter(rank__lte=NOTES_SAMPLES_PER_GROUP)
        .select_related("task__item", "reviewer")
        .order_by("-created_at", "-id")
    )
    for decision in samples:
        groups[decision.key].decisions.append(decision)
    notes.groups = list(groups.values())


def review_notes(job: Job, *, page: int = 1, clause: str | None = None) -> ReviewNotes:
    """The job's decisions grouped by quoted clause, most-quoted clause first, one page at a time.

    Counting and grouping run in SQL (``GROUP BY lower(quote)``); a page holds
    ``NOTES_GROUPS_PER_PAGE`` clauses with their ``NOTES_SAMPLES_PER_GROUP`` newest decisions
    (one window query). With ``clause`` (a key from a group), that clause's decisions are paged
    instead. Whatever the number of decisions, a page loads a bounded number of rows. The first
    page also groups the decisions by the clause an explain run found deciding their mismatch
    (``labeling.explain.pages.computed_groups``: two queries).
    """
    notes = _totals(job)
    if clause is not None:
        _open_clause(notes, clause, page)
    else:
        _page_of_groups(notes, page)
        if page == 1:
            notes.computed = computed_groups(job)
    return notes
