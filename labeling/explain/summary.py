"""What the pages read about a job's attribution: runs, clauses ranked, items per clause, one
item's conclusion. Read-only; every function is a fixed, small number of queries.

Clause keys are ``worker.clauses`` keys of one side's text (``job.text_a`` for side "A",
``job.text_b`` for "B"); ``clause_info`` gives a key's name and lines. The swap test's findings
(``decides``/``tied``) are on side A, with B's wording of the clause in ``other``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, QuerySet

from labeling.models import (
    ExplainFinding,
    ExplainItem,
    ExplainRun,
    ExplainStatus,
    FindingRole,
    Job,
    RunKind,
)
from worker.clauses import Clause, parse_clauses


@dataclass(frozen=True)
class ClauseRow:
    """One clause of one side with how many items each test named it for."""

    side: str  # "A" or "B"
    clause: str  # its key in that side's text
    name: str  # its bold name, else the first words of its text
    start_line: int  # 1-based lines in that side's text; 0 when the text no longer has it
    end_line: int
    decides: int = 0  # mismatches its swap decides alone (side A only)
    tied: int = 0  # mismatches where it ties for deciding (side A only)
    necessary: int = 0  # labels that flip when it is removed
    gold_misses: int = 0  # wrong labels its removal fixes

    @property
    def total(self) -> int:
        return self.decides + self.tied + self.necessary + self.gold_misses


@dataclass(frozen=True)
class JobExplanation:
    """The job page's section: the latest run's progress and the clauses ranked."""

    latest: ExplainRun | None  # the job's newest run (its progress, status, error)
    active: bool  # a run is queued or running (cancel it with ``services.cancel_explain``)
    explained: int  # items with a conclusion (all runs)
    mismatches_explained: int  # of which mismatches (verdict decided, tie or none)
    undecided: int  # mismatches where no single clause decides
    failed: int  # items a run could not explain
    clauses: list[ClauseRow] = field(default_factory=list)  # most items first


@dataclass(frozen=True)
class ItemExplanation:
    """One item's conclusion (the review card, the item's page, the API)."""

    verdict: str  # labeling.models.ExplainVerdict
    label_a: int | None
    label_b: int | None
    clause_a: Clause | None  # the deciding clause in A (DECIDED), else None
    clause_b: Clause | None  # B's wording of it
    effect: float | None  # |Δ margin| of the deciding swap
    tied: list[Clause]  # TIE: A's tied clauses, largest effect first
    necessary_a: list[Clause]  # removal flips A's label, largest effect first
    necessary_b: list[Clause]
    gold_misses: list[tuple[str, Clause]]  # (side, clause) whose removal fixes a wrong label
    error: str


def clause_info(text: str) -> dict[str, Clause]:
    """A side's clauses by key (``worker.clauses.parse_clauses``)."""
    return {c.key: c for c in parse_clauses(text)}


def clause_title(clause: Clause) -> str:
    """A short name for a clause: its bold name, else its first words."""
    if clause.name:
        return clause.name
    words = clause.text.split()
    return " ".join(words[:8]) + ("…" if len(words) > 8 else "")


def latest_run(job: Job) -> ExplainRun | None:
    return ExplainRun.objects.filter(job=job, kind=RunKind.ATTRIBUTION).order_by("-attempt").first()


def job_explanation(job: Job) -> JobExplanation:
    """Runs, counts and clauses ranked by how many items they decide, then are necessary for,
    then cause a gold miss (four queries and two clause parses)."""
    latest = latest_run(job)
    verdicts = dict(
        ExplainItem.objects.filter(job=job)
        .order_by()
        .values("verdict")
        .annotate(n=Count("pk"))
        .values_list("verdict", "n")
    )
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    rows = (
        ExplainFinding.objects.filter(job=job)
        .values_list("side", "clause", "role")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for side, clause, role, n in rows:
        counts[(side, clause)][role] = n
    texts = {"A": clause_info(job.text_a), "B": clause_info(job.text_b)}
    clauses = [_clause_row(side, key, texts[side].get(key), c) for (side, key), c in counts.items()]
    clauses.sort(key=lambda r: (-r.decides, -r.tied, -r.necessary, -r.gold_misses, r.side))
    return JobExplanation(
        latest=latest,
        active=ExplainRun.objects.filter(
            job=job,
            kind=RunKind.ATTRIBUTION,
            status__in=(ExplainStatus.QUEUED, ExplainStatus.RUNNING),
        ).exists(),
        explained=sum(verdicts.values()),
        mismatches_explained=sum(verdicts.get(v, 0) for v in ("decided", "tie", "none")),
        undecided=verdicts.get("none", 0),
        failed=verdicts.get("failed", 0),
        clauses=clauses,
    )


def _clause_row(side: str, key: str, clause: Clause | None, counts: dict[str, int]) -> ClauseRow:
    return ClauseRow(
        side=side,
        clause=key,
        name=clause_title(clause) if clause else key,
        start_line=clause.start_line if clause else 0,
        end_line=clause.end_line if clause else 0,
        decides=counts.get(FindingRole.DECIDES, 0),
        tied=counts.get(FindingRole.TIED, 0),
        necessary=counts.get(FindingRole.NECESSARY, 0),
        gold_misses=counts.get(FindingRole.GOLD_MISS, 0),
    )


def clause_item_ids(
    job: Job, side: str, clause: str, roles: tuple[str, ...] | None = None
) -> QuerySet[ExplainFinding, int]:
    """Item ids the clause was found for (``roles``: FindingRole values, default all), as a
    subquery-ready queryset: ``Item.objects.filter(pk__in=clause_item_ids(...))``."""
    found = ExplainFinding.objects.filter(job=job, side=side, clause=clause)
    if roles is not None:
        found = found.filter(role__in=roles)
    return found.order_by().values_list("item_id", flat=True).distinct()


def decided_item_ids(job: Job, clause: str) -> QuerySet[ExplainFinding, int]:
    """Mismatches whose deciding clause (alone or tied) is A's ``clause``: the items filter
    "decided by clause …"."""
    return clause_item_ids(job, "A", clause, (FindingRole.DECIDES, FindingRole.TIED))


def deciding_clauses(job: Job, item_ids: list[int]) -> dict[int, ExplainItem]:
    """Conclusions of several items at once (review queue, notes grouping): {item id: row}.
    Read ``clause_a``/``clause_b`` (keys) and ``verdict``; one query."""
    rows = ExplainItem.objects.filter(job=job, item_id__in=item_ids)
    return {row.item_id: row for row in rows}


def item_explanation(job: Job, item_id: int) -> ItemExplanation | None:
    """One item's conclusion with its clauses (two queries, two clause parses), or None when
    no run has explained it."""
    row = ExplainItem.objects.filter(job=job, item_id=item_id).first()
    if row is None:
        return None
    texts = {"A": clause_info(job.text_a), "B": clause_info(job.text_b)}
    found = ExplainFinding.objects.filter(job=job, item_id=item_id).order_by("role", "rank")
    by_role: dict[str, list[tuple[str, Clause]]] = defaultdict(list)
    for f in found:
        clause = texts[f.side].get(f.clause)
        if clause is not None:
            by_role[f.role].append((f.side, clause))
    necessary = by_role[FindingRole.NECESSARY]
    return ItemExplanation(
        verdict=row.verdict,
        label_a=row.label_a,
        label_b=row.label_b,
        clause_a=texts["A"].get(row.clause_a) if row.verdict == "decided" else None,
        clause_b=texts["B"].get(row.clause_b) if row.verdict == "decided" else None,
        effect=row.effect,
        tied=[c for _, c in by_role[FindingRole.TIED]],
        necessary_a=[c for s, c in necessary if s == "A"],
        necessary_b=[c for s, c in necessary if s == "B"],
        gold_misses=by_role[FindingRole.GOLD_MISS],
        error=row.error,
    )
