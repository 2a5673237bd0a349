"""What the pages show of a job's attribution, built on ``summary``: the job page's section and
its buttons, the items filter's clauses, the review card's deciding clause, the review notes'
computed groups and the version page's heat strip.

Every function here runs a fixed number of queries, whatever the number of clauses or items.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django import forms
from django.db.models import Count, OuterRef, Subquery
from django.urls import reverse
from django.utils.http import urlencode

from labeling.explain import services, summary
from labeling.models import (
    Decision,
    ExplainFinding,
    ExplainItem,
    ExplainVerdict,
    FindingRole,
    Job,
)
from policies import hooks
from worker.clauses import Clause, parse_clauses

# The items filter's "role": what the clause was found to do for the item.
ROLE_DECIDES, ROLE_NECESSARY, ROLE_GOLD_MISS = "decides", "necessary", "gold_miss"
ROLE_CHOICES = [
    (ROLE_DECIDES, "decides the mismatch"),
    (ROLE_NECESSARY, "is necessary for the label"),
    (ROLE_GOLD_MISS, "causes a gold miss"),
]
ROLES: dict[str, tuple[str, ...]] = {
    ROLE_DECIDES: (FindingRole.DECIDES, FindingRole.TIED),
    ROLE_NECESSARY: (FindingRole.NECESSARY,),
    ROLE_GOLD_MISS: (FindingRole.GOLD_MISS,),
}


@lru_cache(maxsize=64)
def clauses_by_key(text: str) -> dict[str, Clause]:
    """A text's clauses by key; the review card asks for the same two texts again and again."""
    return {c.key: c for c in parse_clauses(text)}


def clause_value(side: str, key: str) -> str:
    """The items filter's value for a clause: ``A:label/HA1/includes/1``."""
    return f"{side}:{key}"


def parse_clause_value(value: str) -> tuple[str, str] | None:
    side, sep, key = value.partition(":")
    if not sep or side not in ("A", "B") or not key:
        return None
    return side, key


def items_query(side: str, key: str, role: str) -> str:
    """The items page's query string listing the items ``role`` found for the clause."""
    return urlencode({"clause": clause_value(side, key), "role": role})


# The job page -------------------------------------------------------------------------------


class ExplainActionForm(forms.Form):
    """The job page's explain buttons: start the first run, explain the remaining mismatches,
    or cancel the active run."""

    explain = forms.ChoiceField(
        choices=[("start", "Explain"), ("more", "Explain the rest"), ("cancel", "Cancel")]
    )


@dataclass(frozen=True)
class ClauseLine:
    """A ranked clause on the job page with the items query of each of its counts."""

    row: summary.ClauseRow
    decides_query: str
    necessary_query: str
    gold_query: str

    @property
    def mismatches(self) -> int:
        return self.row.decides + self.row.tied


@dataclass(frozen=True)
class JobSection:
    explanation: summary.JobExplanation
    clauses: list[ClauseLine]
    mismatches: int  # the job's mismatches (both labels, different)
    remaining: int  # mismatches no run explained yet (failed ones again); 0 while one runs
    tied: int  # mismatches where several clauses tie for deciding

    @property
    def started(self) -> bool:
        return self.explanation.latest is not None


def job_section(job: Job) -> JobSection:
    """The job page's "What decides the mismatches" (``summary.job_explanation``'s four
    queries; the counts come from the job's stats, no more)."""
    explanation = summary.job_explanation(job)
    mismatches = int((job.stats or {}).get("disagree") or 0)
    remaining = 0
    if not explanation.active:
        done = explanation.mismatches_explained
        remaining = max(mismatches - done, 0)
    lines = [
        ClauseLine(
            row=row,
            decides_query=items_query(row.side, row.clause, ROLE_DECIDES),
            necessary_query=items_query(row.side, row.clause, ROLE_NECESSARY),
            gold_query=items_query(row.side, row.clause, ROLE_GOLD_MISS),
        )
        for row in explanation.clauses
    ]
    decided = sum(line.row.decides for line in lines)
    tied_items = explanation.mismatches_explained - explanation.undecided - decided
    return JobSection(
        explanation=explanation,
        clauses=lines,
        mismatches=mismatches,
        remaining=remaining,
        tied=max(tied_items, 0),
    )


def explain_action(job: Job, action: str, by: Any) -> str:
    """Do what an explain button says; the message to show. Raises ``services.ExplainError``."""
    if action == "cancel":
        run = summary.latest_run(job)
        if run is None or not services.cancel_explain(run):
            return "No run was explaining this job."
        return "Explain run cancelled; what it recorded stays."
    run = services.start_explain(job, by) if action == "start" else services.explain_more(job, by)
    n = run.items_total
    return f"Explaining {n} item{'s' if n != 1 else ''} on the model workers."


# The items page -----------------------------------------------------------------------------


def clause_choices(job: Job) -> list[tuple[str, str]]:
    """The clauses any run found for the job, as the items filter's choices (one grouped
    query): A's first, in text order, then B's."""
    found = (
        ExplainFinding.objects.filter(job=job).order_by().values_list("side", "clause").distinct()
    )
    texts = {"A": clauses_by_key(job.text_a), "B": clauses_by_key(job.text_b)}
    rows = []
    for side, key in found:
        clause = texts[side].get(key)
        line = clause.start_line if clause else 0
        label = f"{side} · {summary.clause_title(clause) if clause else key}"
        if clause is not None:
            label += f" ({clause.where})"
        rows.append(((side, line, key), (clause_value(side, key), label)))
    rows.sort(key=lambda r: r[0])
    return [choice for _, choice in rows]


def clause_item_ids(job: Job, value: str, role: str) -> Any:
    """Item ids the filter "clause … role …" keeps, as a subquery."""
    parsed = parse_clause_value(value)
    side, key = parsed if parsed else ("A", "")
    return summary.clause_item_ids(job, side, key, ROLES.get(role, ROLES[ROLE_DECIDES]))


# The review card ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CardClause:
    """The clause that decides a task's mismatch: A's wording and B's."""

    clause_a: Clause
    clause_b: Clause | None
    effect: float | None

    @property
    def title(self) -> str:
        return summary.clause_title(self.clause_a)


def card_clause(job: Job, item_id: int) -> CardClause | None:
    """The deciding clause of one item (one indexed query on ``explain_item_unique``), or None
    when no run found one clause alone."""
    row = list(
        ExplainItem.objects.filter(
            job_id=job.pk, item_id=item_id, verdict=ExplainVerdict.DECIDED
        ).values_list("clause_a", "clause_b", "effect")[:1]
    )
    if not row:
        return None
    key_a, key_b, effect = row[0]
    clause_a = clauses_by_key(job.text_a).get(key_a)
    if clause_a is None:
        return None
    return CardClause(clause_a, clauses_by_key(job.text_b).get(key_b), effect)


# The review notes ---------------------------------------------------------------------------


@dataclass
class ComputedGroup:
    """Decisions on mismatches one clause decides, with the quotes reviewers gave."""

    clause: Clause | None  # None: no single clause decides (or not explained)
    verdict: str
    count: int
    quotes: list[tuple[str, int]]  # (quote, how many), most frequent first

    @property
    def lines(self) -> str:
        if self.clause is None:
            return ""
        return f"{self.clause.start_line}-{self.clause.end_line}"


NOTES_QUOTES_PER_GROUP = 5
NOTES_QUOTE_ROWS = 200  # the most frequent (group, quote) pairs read for the quotes shown


def computed_groups(job: Job) -> list[ComputedGroup]:
    """The job's decisions grouped by the computed deciding clause of their item, the most
    frequent quotes beside each group. Three queries whatever the number of decisions: whether
    any item was explained, decisions counted per (verdict, clause), and the
    ``NOTES_QUOTE_ROWS`` most frequent (verdict, clause, quote) rows."""
    conclusions = ExplainItem.objects.filter(job_id=job.pk)
    if not conclusions.exists():
        return []
    item = conclusions.filter(item_id=OuterRef("task__item_id"))
    decisions = Decision.objects.filter(task__job=job).annotate(
        verdict=Subquery(item.values("verdict")[:1]),
        clause_a=Subquery(item.values("clause_a")[:1]),
    )
    counts = decisions.values("verdict", "clause_a").annotate(n=Count("id")).order_by()
    quotes = (
        decisions.exclude(quote="")
        .values("verdict", "clause_a", "quote")
        .annotate(n=Count("id"))
        .order_by("-n", "quote")[:NOTES_QUOTE_ROWS]
    )
    texts = clauses_by_key(job.text_a)
    groups: dict[tuple[str, str], ComputedGroup] = {}
    for row in counts:
        key = _group_key(row["verdict"], row["clause_a"])
        if key not in groups:
            clause = texts.get(key[0]) if key[0] else None
            groups[key] = ComputedGroup(clause, row["verdict"] or "", 0, [])
        groups[key].count += row["n"]
    for row in quotes:
        group = groups.get(_group_key(row["verdict"], row["clause_a"]))
        if group is not None and len(group.quotes) < NOTES_QUOTES_PER_GROUP:
            group.quotes.append((row["quote"], row["n"]))
    return sorted(groups.values(), key=lambda g: (g.clause is None, -g.count))


def _group_key(verdict: str | None, clause_a: str | None) -> tuple[str, str]:
    """(A's clause, "") for a decided mismatch; ("", verdict) otherwise ("": not explained)."""
    if verdict == ExplainVerdict.DECIDED:
        return clause_a or "", ""
    return "", verdict or ""


# The version page (registered in ``labeling.apps`` as ``hooks.clause_figures``) -------------


def version_clause_figures(version_id: int) -> hooks.ClauseFigures | None:
    """For a version's policy text, how many mismatches each clause decides and how many gold
    misses it causes, from its newest job that was explained (two queries)."""
    job = (
        Job.objects.filter(version_id=version_id, explain_runs__isnull=False)
        .order_by("-created_at", "-pk")
        .only("pk", "text_a")
        .first()
    )
    if job is None:
        return None
    rows = (
        ExplainFinding.objects.filter(job=job, side="A")
        .order_by()
        .values_list("clause", "role")
        .annotate(n=Count("pk"))
    )
    counts: dict[str, dict[str, int]] = {}
    for key, role, n in rows:
        counts.setdefault(key, {})[role] = n
    items_url = reverse("labeling:job_items", args=[job.pk])
    return hooks.ClauseFigures(
        job_id=job.pk,
        text=job.text_a,
        clauses={
            key: hooks.ClauseCount(
                mismatches=c.get(FindingRole.DECIDES, 0) + c.get(FindingRole.TIED, 0),
                gold_misses=c.get(FindingRole.GOLD_MISS, 0),
                mismatches_url=f"{items_url}?{items_query('A', key, ROLE_DECIDES)}",
                gold_misses_url=f"{items_url}?{items_query('A', key, ROLE_GOLD_MISS)}",
            )
            for key, c in counts.items()
        },
    )
