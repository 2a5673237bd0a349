"""What the pages show of a version's probes, built on ``labeling.probes.summary``: the probe
page (its run, progress and results), the version page's probe card and the finalize panel's
probe lines.

Every figure is read from a probe run's stored ``summary`` (``summary.version_probe``: THE probe
of a version); nothing here recomputes one. A page costs a fixed number of queries: the two runs,
and one query for the texts of the items the summary names (its lists are capped when written).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from labeling.jobs.display import pct
from labeling.models import ExplainRun, Item
from labeling.probes import llm, summary
from labeling.probes import services as probe_services
from policies.models import Version

SHOWN_TEXT = 300  # characters of an item's text shown beside its id


@dataclass(frozen=True)
class Share:
    """A share with its Wilson interval, as the pages write it."""

    count: int
    n: int
    share: str
    interval: str

    @classmethod
    def of(cls, data: dict[str, Any] | None, count_key: str, n_key: str = "n") -> Share | None:
        if not data:
            return None
        low, high = data.get("low"), data.get("high")
        interval = f"{pct(low)}–{pct(high)}" if low is not None and high is not None else "—"
        return cls(
            count=int(data.get(count_key) or 0),
            n=int(data.get(n_key) or 0),
            share=pct(data.get("share")),
            interval=interval,
        )


@dataclass(frozen=True)
class ShownItem:
    """An item a finding names: its id and the start of its text (rendered escaped)."""

    pk: int
    text: str


@dataclass(frozen=True)
class InversionRow:
    label: str
    response: Share | None
    not_flipped: list[ShownItem]


@dataclass(frozen=True)
class ClauseRow:
    key: str
    where: str
    text: str
    moved: int
    to_one: int
    to_zero: int
    status: str
    items: list[ShownItem]


@dataclass(frozen=True)
class Results:
    """A finished probe run's figures, with the texts of the items they name."""

    run: ExplainRun
    data: dict[str, Any]
    leakage: Share | None
    leaked: list[ShownItem]
    inversion: list[InversionRow]
    dead: list[ClauseRow]
    load_bearing: list[ClauseRow]
    minor: int
    rewording: Share | None
    rewording_moved: list[ShownItem]
    flips: Share | None
    stable: Share | None
    tags: list[dict[str, Any]]
    carveouts: dict[str, int]
    leakage_over: bool
    max_leakage: str


@dataclass(frozen=True)
class ProbePage:
    version: Version
    latest: ExplainRun | None  # the newest probe run, whatever its outcome
    results: Results | None  # THE probe of the version (``summary.version_probe``)
    llm_available: bool
    can_start: bool
    can_cancel: bool
    warnings: list[str] = field(default_factory=list)
    # The carve-out section (``_carveouts.html``) of THE probe shown.
    llm_section: llm.CarveoutSection | None = None

    @property
    def active(self) -> bool:
        return self.latest is not None and self.latest.is_active

    @property
    def older_results(self) -> bool:
        """The figures shown come from an earlier run than the newest (which failed, was
        cancelled or still runs)."""
        return (
            self.results is not None
            and self.latest is not None
            and self.results.run.pk != self.latest.pk
        )


def _item_ids(data: dict[str, Any]) -> set[int]:
    ids: set[int] = set((data.get("leakage") or {}).get("items") or [])
    for row in data.get("inversion") or []:
        ids.update(row.get("not_flipped") or [])
    for row in data.get("clauses") or []:
        if row.get("status") == "load_bearing":
            ids.update(row.get("items") or [])
    ids.update((data.get("rewording") or {}).get("moved") or [])
    return {i for i in ids if isinstance(i, int)}


def _texts(ids: set[int]) -> dict[int, str]:
    """One query for the texts of every item the summary names (its lists are capped)."""
    if not ids:
        return {}
    rows = Item.objects.filter(pk__in=sorted(ids)).values_list("pk", "text")
    return {pk: text[:SHOWN_TEXT] for pk, text in rows}


def _shown(ids: list[Any] | None, texts: dict[int, str]) -> list[ShownItem]:
    return [ShownItem(i, texts.get(i, "(item deleted)")) for i in ids or [] if isinstance(i, int)]


def _clause_row(row: dict[str, Any], texts: dict[int, str]) -> ClauseRow:
    return ClauseRow(
        key=str(row.get("key", "")),
        where=str(row.get("where", "")),
        text=str(row.get("text", "")),
        moved=int(row.get("moved") or 0),
        to_one=int(row.get("to_one") or 0),
        to_zero=int(row.get("to_zero") or 0),
        status=str(row.get("status", "")),
        items=_shown(row.get("items"), texts),
    )


def results_of(run: ExplainRun, findings: summary.ProbeFindings | None = None) -> Results:
    """A probe run's stored summary as the page shows it (one query for item texts)."""
    data = run.summary or {}
    texts = _texts(_item_ids(data))
    clauses = [_clause_row(row, texts) for row in data.get("clauses") or []]
    steer = data.get("steerability") or {}
    rewording = data.get("rewording")
    return Results(
        run=run,
        data=data,
        leakage=Share.of(data.get("leakage"), "count"),
        leaked=_shown((data.get("leakage") or {}).get("items"), texts),
        inversion=[
            InversionRow(
                label=str(row.get("label", "")),
                response=Share.of(row, "flipped", "expected"),
                not_flipped=_shown(row.get("not_flipped"), texts),
            )
            for row in data.get("inversion") or []
        ],
        dead=[c for c in clauses if c.status == "dead"],
        load_bearing=[c for c in clauses if c.status == "load_bearing"],
        minor=sum(1 for c in clauses if c.status == "minor"),
        rewording=Share.of(rewording, "unchanged"),
        rewording_moved=_shown((rewording or {}).get("moved"), texts),
        flips=Share.of(steer.get("flips"), "observed", "expected"),
        stable=Share.of(steer.get("stable"), "unchanged"),
        tags=list(data.get("tags") or []),
        carveouts=dict(data.get("carveouts") or {}),
        leakage_over=bool(findings.leakage_over) if findings else False,
        max_leakage=pct(settings.COPE_PROBE_MAX_LEAKAGE),
    )


def probe_page(version: Version, user: Any) -> ProbePage:
    """The probe page of a version: its newest run and THE probe's figures."""
    latest = summary.latest_probe(version)
    findings = summary.probe_findings(version)
    shown = findings.run
    return ProbePage(
        version=version,
        latest=latest,
        results=results_of(shown, findings) if shown is not None else None,
        llm_available=llm.llm_available(),
        can_start=user.has_perm("labeling.add_job") and not (latest and latest.is_active),
        can_cancel=user.has_perm("labeling.change_job") and bool(latest and latest.is_active),
        warnings=list(findings.warnings),
        llm_section=llm.carveout_section(shown, user),
    )


def probe_action(version: Version, action: str, by: Any) -> str:
    """Do what a probe button says; the message to show. Raises ``ProbeError``."""
    if action == "cancel":
        run = summary.latest_probe(version)
        if run is None or not probe_services.cancel_probe(run):
            return "No probe was running for this version."
        return "Probe cancelled; what it recorded stays."
    run = probe_services.start_probe(version, by=by)
    n = run.items_total
    return (
        f"Probing {version} on {n} item{'s' if n != 1 else ''} of the evaluation set on the "
        "model workers."
    )


@dataclass(frozen=True)
class ProbeCard:
    """The version page's probe line: the latest steerability and where to probe."""

    version: Version
    latest: ExplainRun | None
    run: ExplainRun | None
    flips: Share | None
    stable: Share | None
    warnings: list[str]


def probe_card(version: Version) -> ProbeCard:
    findings = summary.probe_findings(version)
    run = findings.run
    steer = (run.summary or {}).get("steerability") or {} if run is not None else {}
    return ProbeCard(
        version=version,
        latest=summary.latest_probe(version),
        run=run,
        flips=Share.of(steer.get("flips"), "observed", "expected"),
        stable=Share.of(steer.get("stable"), "unchanged"),
        warnings=list(findings.warnings),
    )


@dataclass(frozen=True)
class ProbeLines:
    """A probe's headline figures from its summary (live, or frozen in finalize evidence):
    what the finalize panel shows."""

    flips: Share | None
    stable: Share | None
    leakage: Share | None
    dead: list[ClauseRow]
    load_bearing: int


def probe_lines(data: dict[str, Any] | None) -> ProbeLines | None:
    """The finalize panel's probe figures (no query: the summary holds them)."""
    if not data:
        return None
    steer = data.get("steerability") or {}
    clauses = [_clause_row(row, {}) for row in data.get("clauses") or []]
    return ProbeLines(
        flips=Share.of(steer.get("flips"), "observed", "expected"),
        stable=Share.of(steer.get("stable"), "unchanged"),
        leakage=Share.of(data.get("leakage"), "count"),
        dead=[c for c in clauses if c.status == "dead"],
        load_bearing=sum(1 for c in clauses if c.status == "load_bearing"),
    )
