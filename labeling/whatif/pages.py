"""What the what-if pages show, built on a run's stored ``summary`` (written by
``labeling.whatif.record`` when the run finishes): the edit form of a version's clause, the run's
before -> after table and changed items, and the version page's what-if card.

Nothing here recomputes a figure: agreement, kappa and the gold scores are the summary's. Each
function costs a fixed number of queries: the runs, and one query for the texts of the items the
summary names (its lists are capped when written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labeling.jobs.display import pct
from labeling.jobs.evaluation import deciding_job
from labeling.models import ExplainRun, ExplainStatus, Job, RunKind
from labeling.whatif import summary
from policies.models import Version
from worker.clauses import Clause, align_clauses, clause_lines, parse_clauses

SHOWN_TEXT = 300  # characters of an item's text shown beside its id
RUNS_LISTED = 25  # a version's what-if runs on its what-if page, newest first
RUNS_ON_CARD = 5  # ... and on the version page's card


@dataclass(frozen=True)
class ClauseWording:
    """A clause of the version's text with its words as written, and its twin's aligned
    clause (None when the twin has none, or there is no twin)."""

    clause: Clause
    wording_a: str
    twin: Clause | None
    wording_b: str


def clause_choices(version: Version) -> list[tuple[str, str]]:
    """The version's clauses as the form's choices, in text order."""
    return [(c.key, _clause_label(c)) for c in parse_clauses(version.text)]


def _clause_label(clause: Clause) -> str:
    title = clause.name or clause.text
    if len(title) > 60:
        title = title[:59] + "…"
    return f"{clause.where} · {title}"


def clause_wording(version: Version, key: str) -> ClauseWording | None:
    """The clause ``key`` of the version's text and its twin's aligned clause, or None when
    the text has no such clause."""
    clauses = parse_clauses(version.text)
    clause = next((c for c in clauses if c.key == key), None)
    if clause is None:
        return None
    twin: Clause | None = None
    if version.twin_text:
        pairs = align_clauses(clauses, parse_clauses(version.twin_text))
        twin = next((p.b for p in pairs if p.a is not None and p.a.key == key), None)
    return ClauseWording(
        clause=clause,
        wording_a=clause_lines(version.text, clause),
        twin=twin,
        wording_b=clause_lines(version.twin_text, twin) if twin is not None else "",
    )


@dataclass(frozen=True)
class RunLine:
    """A what-if run in a version's list: what was edited, how it ended, what it predicts."""

    pk: int
    attempt: int
    clause_key: str
    status: str
    status_display: str
    created_at: Any
    requested_by: str
    predicted: str  # the whole set's agreement after the edit, "—" until it finished
    made_version_id: int | None
    suggested: bool  # a suggested rewrite (its parent is a SUGGEST run)


def version_runs(version: Version, limit: int) -> list[RunLine]:
    """The version's what-if runs, newest first (one query; the summary's one figure is read
    by the database, not the summary's capped item lists)."""
    rows = summary.version_whatifs(version).values(
        "pk",
        "attempt",
        "clause_key",
        "status",
        "created_at",
        "requested_by__username",
        "summary__predicted__agreement",
        "made_version_id",
        "parent_id",
    )[:limit]
    labels = dict(ExplainStatus.choices)
    return [
        RunLine(
            pk=row["pk"],
            attempt=row["attempt"],
            clause_key=row["clause_key"],
            status=row["status"],
            status_display=str(labels.get(row["status"], row["status"])),
            created_at=row["created_at"],
            requested_by=row["requested_by__username"] or "",
            predicted=pct(_number(row["summary__predicted__agreement"])),
            made_version_id=row["made_version_id"],
            suggested=row["parent_id"] is not None,
        )
        for row in rows
    ]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class FormPage:
    """The what-if page of a version: the clause chosen (its two wordings), the deciding job
    the edit is scored on, and the version's earlier runs."""

    version: Version
    job: Job | None
    wording: ClauseWording | None
    runs: list[RunLine]
    can_start: bool


def form_page(version: Version, key: str, user: Any) -> FormPage:
    return FormPage(
        version=version,
        job=deciding_job(version),
        wording=clause_wording(version, key) if key else None,
        runs=version_runs(version, RUNS_LISTED),
        can_start=user.has_perm("labeling.add_job"),
    )


# The run's page -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureRow:
    """One line of the before -> after table."""

    key: str
    name: str
    n: int
    before: str
    after: str
    trend: str  # "better", "worse" or "same" (every figure here is better higher)


@dataclass(frozen=True)
class ChangedItem:
    """An item whose side-A label the edit changed, with its gold label when it has one."""

    pk: int
    text: str
    before: Any
    after: Any
    gold: str


@dataclass(frozen=True)
class Changed:
    kind: str  # fixed, broken or other
    title: str
    count: int  # every such item; ``items`` holds the ones the summary kept
    items: list[ChangedItem]


@dataclass(frozen=True)
class Results:
    data: dict[str, Any]
    figures: list[FigureRow]
    changed: list[Changed]
    same_as_job: bool
    weak: bool
    predicted: str
    predicted_n: int


@dataclass(frozen=True)
class RunPage:
    run: ExplainRun
    version: Version
    wording: ClauseWording | None  # the clause as the version's text has it now
    results: Results | None  # None until the run has written its summary
    can_cancel: bool
    can_make: bool
    made_version: Version | None

    @property
    def active(self) -> bool:
        return self.run.is_active


def _figure(key: str, name: str, n: Any, before: Any, after: Any, *, kappa: bool = False) -> Any:
    b, a = _number(before), _number(after)
    if b is None and a is None:
        return None
    trend = "same"
    if b is not None and a is not None and abs(a - b) > 1e-9:
        trend = "better" if a > b else "worse"
    shown = (lambda x: "—" if x is None else f"{x:.3f}") if kappa else pct
    return FigureRow(key, name, int(n or 0), shown(b), shown(a), trend)


def figures(data: dict[str, Any]) -> list[FigureRow]:
    """The summary's before -> after figures, in the table's order."""
    affected, whole, gold = (data.get(k) or {} for k in ("affected", "whole", "gold"))
    rows = [
        _figure(
            "affected",
            "Agreement of A and B, items this clause decides",
            affected.get("n"),
            (affected.get("before") or {}).get("agreement"),
            (affected.get("after") or {}).get("agreement"),
        ),
        _figure(
            "whole",
            "Agreement of A and B, every item",
            whole.get("n"),
            (whole.get("before") or {}).get("agreement"),
            (whole.get("after") or {}).get("agreement"),
        ),
        _figure(
            "kappa",
            "Cohen's kappa of A and B, every item",
            whole.get("n"),
            (whole.get("before") or {}).get("kappa"),
            (whole.get("after") or {}).get("kappa"),
            kappa=True,
        ),
    ]
    gold_before, gold_after = gold.get("before") or {}, gold.get("after") or {}
    for key, name in (
        ("accuracy", "Gold accuracy (A)"),
        ("precision", "Gold precision (A)"),
        ("recall", "Gold recall of class 1 (A)"),
        ("recall_0", "Gold recall of class 0 (A)"),
        ("f1", "Gold F1 (A)"),
    ):
        rows.append(
            _figure(f"gold-{key}", name, gold.get("n"), gold_before.get(key), gold_after.get(key))
        )
    return [row for row in rows if row is not None]


CHANGED = (
    ("fixed", "Fixed: now agrees with gold"),
    ("broken", "Broken: agreed with gold, no longer does"),
    ("other", "Changed where there is no 0/1 gold label"),
)


def changed_lists(view: summary.WhatIfView) -> list[Changed]:
    """The changed items by kind, each with its text (read by ``summary.whatif_view``)."""
    counts = view.table.get("changed") or {}
    out = []
    for kind, title in CHANGED:
        items = [
            ChangedItem(
                pk=row["item"],
                text=str(row.get("text") or "(item deleted)")[:SHOWN_TEXT],
                before=row.get("before"),
                after=row.get("after"),
                gold="" if row.get("gold") is None else str(row.get("gold")),
            )
            for row in view.changed.get(kind, [])
        ]
        count = counts.get(f"{kind}_count")
        out.append(Changed(kind, title, count if isinstance(count, int) else len(items), items))
    return out


def results_of(run: ExplainRun) -> Results | None:
    """A finished run's stored summary as the page shows it (one query for the item texts),
    or None while it scores or when it ended without one."""
    view = summary.whatif_view(run)
    if not view.finished:
        return None
    data = view.table
    predicted = data.get("predicted") or {}
    return Results(
        data=data,
        figures=figures(data),
        changed=changed_lists(view),
        same_as_job=data.get("same_as_job") is not False,
        weak=bool(data.get("weak")) or run.is_weak,
        predicted=pct(_number(predicted.get("agreement"))),
        predicted_n=int(predicted.get("n") or 0),
    )


def can_make_version(run: ExplainRun, user: Any) -> bool:
    """Whether the page offers "Make it a version": a finished run with figures, not made yet,
    to an author or admin."""
    return (
        run.made_version_id is None
        and run.status in (ExplainStatus.SUCCEEDED, ExplainStatus.PARTIAL)
        and "whole" in (run.summary or {})
        and user.has_perm("policies.add_version")
    )


def run_page(run: ExplainRun, user: Any) -> RunPage:
    version = run.version
    assert version is not None  # a what-if run always has its version
    return RunPage(
        run=run,
        version=version,
        wording=clause_wording(version, run.clause_key),
        results=results_of(run),
        can_cancel=run.is_active and user.has_perm("labeling.change_job"),
        can_make=can_make_version(run, user),
        made_version=run.made_version,
    )


# The version page's card --------------------------------------------------------------------


@dataclass(frozen=True)
class WhatIfCard:
    version: Version
    made_from: ExplainRun | None  # the what-if run this version was made from
    runs: list[RunLine]
    clauses: list[tuple[str, str]]


def whatif_card(version: Version) -> WhatIfCard:
    """The version page's what-if card (two queries): the evidence this version was made from,
    the version's own what-if runs, and a clause picker."""
    made_from = (
        ExplainRun.objects.filter(made_version=version, kind=RunKind.WHATIF)
        .select_related("version")
        .only("pk", "attempt", "clause_key", "version__number", "version__policy_id")
        .order_by("-id")
        .first()
    )
    return WhatIfCard(
        version=version,
        made_from=made_from,
        runs=version_runs(version, RUNS_ON_CARD),
        clauses=clause_choices(version),
    )
