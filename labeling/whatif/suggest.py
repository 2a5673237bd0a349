"""Suggested rewrites of one clause: asked of the LLM, each tried as a what-if edit, ranked.

``request_suggestions`` creates a SUGGEST run (an ``ExplainRun`` of kind suggest, for a version
and a clause, with no job of its own so that the job's attribution pages never take it for
theirs) and, after commit, sends one ``SuggestRequest`` to the model workers
(``worker.suggest_rewrites`` on ``gpu``): the deciding job's text, the clause's key, and up to
``worker.suggest.MAX_MISMATCHES`` of the mismatches the clause decides with the reviewers'
decisions, quotes and notes. The worker's LLM (``COPE_TWIN_BACKEND``, the twin writer) writes
``COPE_SUGGEST_CANDIDATES`` rewrites, each with a paraphrase for the twin and a rationale; the
answer comes back through ``labeling.record_suggest`` on ``default``, and
``record_suggest_result`` records it once under the run row's lock (``llm_status`` leaves
requested exactly once: a redelivered answer changes nothing). Each candidate that passes the
checks again becomes a what-if run (``start_whatif(..., parent=the SUGGEST run)``), scored like
any what-if edit. GPU hosts never see the database.

``rank_candidates`` (pure) orders the finished candidates by gold F1 after, then agreement on the
whole set after, and rejects, with the reason in words, any whose gold F1 or recall of either
class (1: TPR, 0: TNR) drops by more than ``COPE_SUGGEST_TOLERANCE``. Nothing is applied here:
a candidate becomes a version only when the author makes it one on its what-if page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from cope_studio.celery import app as celery_app
from labeling.explain.services import resume_after
from labeling.explain.summary import decided_item_ids
from labeling.jobs.evaluation import deciding_job
from labeling.models import ExplainRun, ExplainStatus, Job, ReviewTask, RunKind
from labeling.probes.llm import LLM_DONE, LLM_FAILED, LLM_REQUESTED, llm_available
from labeling.whatif.services import WhatIfError, start_whatif
from labeling.whatif.summary import FINISHED
from policies.models import Version
from worker.clauses import Clause, parse_clauses
from worker.contract import GPU_QUEUE
from worker.contract_llm import SUGGEST_TASK, SuggestMismatch, SuggestRequest, SuggestResult
from worker.suggest import MAX_MISMATCHES, candidate_problem

log = logging.getLogger(__name__)

NO_BACKEND_MESSAGE = (
    "Suggested rewrites need an LLM backend: set COPE_TWIN_BACKEND (with COPE_TWIN_MODEL, or "
    "COPE_TWIN_BASE_URL and COPE_TWIN_OPENAI_MODEL) on the web app and the GPU worker. A "
    "what-if edit you write yourself works without one."
)
# Who may ask: those who start what-if edits (authors and admins): each candidate is one.
ASK_PERM = "labeling.add_job"
# A run has at most COPE_SUGGEST_CANDIDATES candidates; the section lists at most this many.
SHOWN_CANDIDATES = 50
# Drops are compared with the tolerance after rounding away float noise (0.1 - 0.08 > 0.02).
_EPSILON = 1e-9


class SuggestError(Exception):
    """Suggestions that cannot be asked for; the message is for the person who asked."""


def send_suggest_request(request: dict[str, Any]) -> None:
    """Hand a ``SuggestRequest`` (as a dict) to the model workers."""
    celery_app.send_task(SUGGEST_TASK, args=[request], queue=GPU_QUEUE)


def _send_or_fail(request: dict[str, Any]) -> None:
    """Send after commit; a broker that refuses fails the run with the reason, so the author
    may ask again instead of waiting for an answer that cannot come."""
    try:
        send_suggest_request(request)
    except Exception as exc:
        log.exception("suggest run %s: the broker refused the request", request["run_id"])
        ExplainRun.objects.filter(pk=request["run_id"], llm_status=LLM_REQUESTED).update(
            llm_status=LLM_FAILED,
            status=ExplainStatus.FAILED,
            llm_error=f"The request could not be sent to the model workers: {exc}",
            finished_at=timezone.now(),
        )


def _pending(runs: QuerySet[ExplainRun]) -> QuerySet[ExplainRun]:
    """Requests still worth waiting for: asked less than COPE_RESUME_AFTER_SECONDS ago (a
    request older than that has lost its message or its worker; it may be asked again)."""
    return runs.filter(llm_status=LLM_REQUESTED, started_at__gte=timezone.now() - resume_after())


def find_clause(text: str, clause_key: str) -> Clause | None:
    return next((c for c in parse_clauses(text) if c.key == clause_key), None)


def clause_mismatches(job: Job, clause_key: str, limit: int = MAX_MISMATCHES) -> list[int]:
    """Up to ``limit`` of the mismatches the clause decides (``decided_item_ids``, as the
    what-if run counts them), or of all the job's mismatches when no explained one is its."""
    decided = list(decided_item_ids(job, clause_key).order_by("item_id")[:limit])
    if decided:
        return decided
    return list(
        ReviewTask.objects.filter(job=job)
        .order_by("item_id")
        .values_list("item_id", flat=True)[:limit]
    )


def mismatch_data(job: Job, item_ids: list[int]) -> list[SuggestMismatch]:
    """The prompt's view of each mismatch: content, both labels, the reviewer's decision with
    its quote and note (one query)."""
    tasks = (
        ReviewTask.objects.filter(job=job, item_id__in=item_ids)
        .select_related("item", "decision")
        .order_by("item_id")
    )
    out = []
    for task in tasks:
        decision = getattr(task, "decision", None)
        out.append(
            SuggestMismatch(
                item_id=task.item_id,
                text=task.item.text,
                label_a=task.label_a,
                label_b=task.label_b,
                correct=decision.label if decision else "",
                wording=decision.wording if decision else "",
                quote=decision.quote if decision else "",
                note=decision.note if decision else "",
            )
        )
    return out


def request_suggestions(version: Version, *, clause_key: str, by: Any) -> ExplainRun:
    """Ask the LLM for rewrites of one clause of ``version``. Raises ``SuggestError`` without a
    backend, without a deciding job, for a clause the text lacks, or while the same clause's
    rewrites are still being written. The message leaves after commit."""
    if not llm_available():
        raise SuggestError(NO_BACKEND_MESSAGE)
    job = deciding_job(version)
    if job is None:
        raise SuggestError(
            "This version has no deciding job yet: run a binocular job on the policy's "
            "evaluation set first; suggested rewrites are scored on that job's items."
        )
    if find_clause(job.text_a, clause_key) is None:
        raise SuggestError(f"The version's text has no clause “{clause_key}”.")
    mismatches = mismatch_data(job, clause_mismatches(job, clause_key))
    with transaction.atomic():
        Version.objects.select_for_update().filter(pk=version.pk).order_by("pk").values(
            "pk"
        ).first()  # serialise the numbering and the one-at-a-time check
        runs = ExplainRun.objects.filter(version=version, kind=RunKind.SUGGEST)
        if _pending(runs.filter(clause_key=clause_key)).exists():
            raise SuggestError("Rewrites of this clause are being written already.")
        run = ExplainRun.objects.create(
            kind=RunKind.SUGGEST,
            version=version,
            attempt=(runs.aggregate(n=Max("attempt"))["n"] or 0) + 1,
            status=ExplainStatus.RUNNING,
            requested_by=by,
            clause_key=clause_key,
            llm_status=LLM_REQUESTED,
            started_at=timezone.now(),
        )
        request = SuggestRequest(
            run_id=run.pk,
            policy=job.text_a,
            clause_key=clause_key,
            candidates=int(settings.COPE_SUGGEST_CANDIDATES),
            mismatches=mismatches,
        ).to_dict()
        transaction.on_commit(lambda: _send_or_fail(request))
    log.info("suggest run %s: asked with %d mismatches", run.pk, len(mismatches))
    return run


def _start_candidates(run: ExplainRun, result: SuggestResult) -> tuple[int, list[str]]:
    """Start a what-if run per usable candidate (checked again here: the worker may run other
    code); (how many started, a line per candidate not tried)."""
    assert run.version is not None
    clause = find_clause(run.version.text, run.clause_key)
    current = clause.text if clause else ""
    started, problems = 0, []
    for number, candidate in enumerate(result.candidates, start=1):
        problem = candidate_problem(candidate, current)
        if not problem and started == int(settings.COPE_SUGGEST_CANDIDATES):
            problem = f"{started} were asked for"
        if problem:
            problems.append(f"Candidate {number} not tried: {problem}.")
            continue
        try:
            with transaction.atomic():  # a refused candidate leaves nothing behind
                start_whatif(
                    run.version,
                    clause_key=run.clause_key,
                    edit_a=candidate.rewrite,
                    edit_b=candidate.paraphrase,
                    by=run.requested_by,
                    parent=run,
                    rationale=candidate.rationale,
                )
        except WhatIfError as exc:
            problems.append(f"Candidate {number} not tried: {exc}")
            continue
        started += 1
    return started, problems


def record_suggest_result(result: SuggestResult) -> str:
    """Write a worker's answer once: the prompt and model, a what-if run per usable candidate,
    and the outcome. ``llm_status`` moves from requested under the run's row lock, so a
    redelivered or late answer is ignored. Failed: the request failed or no candidate could
    be tried (the reasons in ``llm_error``). Returns what was done."""
    with transaction.atomic():
        run = (
            ExplainRun.objects.select_for_update(of=("self",))  # not the outer-joined version
            .select_related("version", "requested_by")
            .filter(pk=result.run_id, kind=RunKind.SUGGEST)
            .order_by("pk")
            .first()
        )
        if run is None:
            log.warning("suggest answer for unknown run %s dropped", result.run_id)
            return "unknown"
        if run.llm_status != LLM_REQUESTED:
            log.info("suggest run %s: answer already recorded; ignored", run.pk)
            return "duplicate"
        started, problems = 0, [result.error]
        if not result.error:
            started, tried = _start_candidates(run, result)
            problems = list(result.problems) + tried
            if not result.candidates and not problems:
                problems = ["The model wrote no usable rewrite."]
        ok = started > 0
        ExplainRun.objects.filter(pk=run.pk, llm_status=LLM_REQUESTED).update(
            llm_status=LLM_DONE if ok else LLM_FAILED,
            status=ExplainStatus.SUCCEEDED if ok else ExplainStatus.FAILED,
            llm_model=result.model[:300],
            llm_prompt=result.prompt,
            llm_error="\n".join(problems),
            items_total=len(result.candidates),
            items_done=started,
            finished_at=timezone.now(),
        )
    log.info("suggest run %s: %d candidates started", run.pk, started)
    return LLM_DONE if ok else LLM_FAILED


# Ranking (pure: summaries in, order and reasons out) -------------------------------------------


def _pair(table: dict[str, Any], section: str, figure: str) -> tuple[float | None, float | None]:
    part = table.get(section) or {}
    before, after = (part.get("before") or {}), (part.get("after") or {})
    return before.get(figure), after.get(figure)


@dataclass(frozen=True)
class Figures:
    """A finished candidate's before -> after figures, read from its what-if summary."""

    f1: tuple[float | None, float | None]
    recall_1: tuple[float | None, float | None]
    recall_0: tuple[float | None, float | None]
    agreement: tuple[float | None, float | None]  # the whole set, A against B
    affected: tuple[float | None, float | None]  # the clause's mismatches
    gold_n: int
    fixed: int
    broken: int
    drops: dict[str, float]

    @classmethod
    def from_summary(cls, table: dict[str, Any]) -> Figures | None:
        """None while the run has not finished (no table yet)."""
        if "whole" not in table:
            return None
        changed = table.get("changed") or {}
        return cls(
            f1=_pair(table, "gold", "f1"),
            recall_1=_pair(table, "gold", "recall"),
            recall_0=_pair(table, "gold", "recall_0"),
            agreement=_pair(table, "whole", "agreement"),
            affected=_pair(table, "affected", "agreement"),
            gold_n=int((table.get("gold") or {}).get("n", 0)),
            fixed=int(changed.get("fixed_count", 0)),
            broken=int(changed.get("broken_count", 0)),
            drops={k: float(v) for k, v in (table.get("drops") or {}).items()},
        )


_DROPPED = (("f1", "gold F1"), ("recall_1", "recall of 1"), ("recall_0", "recall of 0"))


def rejection(figures: Figures, tolerance: float) -> str:
    """Why the candidate is rejected, in words ("" when it is not): each of gold F1, recall of
    1 and recall of 0 whose drop (the summary's ``drops``) exceeds ``tolerance``."""
    reasons = []
    values = {"f1": figures.f1, "recall_1": figures.recall_1, "recall_0": figures.recall_0}
    for key, name in _DROPPED:
        drop = figures.drops.get(key, 0.0)
        if drop > tolerance + _EPSILON:
            before, after = values[key]
            reasons.append(f"lowers {name} from {before or 0:.2f} to {after or 0:.2f}")
    return "; ".join(reasons)


@dataclass(frozen=True)
class Ranked:
    """One candidate in the order shown: ``rank`` 1.. for the accepted, None otherwise."""

    run_id: int
    figures: Figures | None  # None: still being scored
    rejected: str  # the reason, "" when accepted
    rank: int | None


def _order(entry: tuple[int, Figures]) -> tuple[float, float, int]:
    run_id, figures = entry
    f1, agreement = figures.f1[1], figures.agreement[1]
    return (-(f1 if f1 is not None else -1.0), -(agreement or 0.0), run_id)


def rank_candidates(
    summaries: Sequence[tuple[int, dict[str, Any]]], tolerance: float
) -> list[Ranked]:
    """The candidates ((what-if run id, its summary)) in the order shown: the accepted by gold
    F1 after, then whole agreement after (best first; no gold F1 counts below any); then the
    rejected in the same order, each with its reason; then those still being scored."""
    finished = []
    waiting = []
    for run_id, table in summaries:
        figures = Figures.from_summary(table or {})
        if figures is None:
            waiting.append(Ranked(run_id, None, "", None))
        else:
            finished.append((run_id, figures))
    finished.sort(key=_order)
    accepted: list[Ranked] = []
    rejected: list[Ranked] = []
    for run_id, figures in finished:
        reason = rejection(figures, tolerance)
        if reason:
            rejected.append(Ranked(run_id, figures, reason, None))
        else:
            accepted.append(Ranked(run_id, figures, "", len(accepted) + 1))
    return accepted + rejected + sorted(waiting, key=lambda r: r.run_id)


# The section a page shows ------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A candidate as the section shows it: its what-if run (rewrite, paraphrase, rationale,
    status, progress) and its place in the ranking."""

    run: ExplainRun
    ranked: Ranked

    @property
    def finished(self) -> bool:
        return self.ranked.figures is not None

    @property
    def failed(self) -> bool:
        return self.run.status in (ExplainStatus.FAILED, ExplainStatus.CANCELLED)


@dataclass(frozen=True)
class SuggestSection:
    """What ``_suggestions.html#section`` shows for one clause of a version."""

    version: Version
    clause_key: str
    where: str  # the clause in words ("Includes of (HA1), criterion 2")
    available: bool  # an LLM backend is configured
    can_ask: bool
    run: ExplainRun | None  # the clause's latest SUGGEST run
    candidates: list[Candidate]
    tolerance: float

    stale: bool  # asked, and no answer for longer than COPE_RESUME_AFTER_SECONDS

    @property
    def asked(self) -> bool:
        return self.run is not None and self.run.llm_status == LLM_REQUESTED and not self.stale

    @property
    def waiting(self) -> bool:
        """Something is still to come: the LLM's answer, or a candidate's scores."""
        return self.asked or any(c.run.is_active for c in self.candidates)


def suggest_section(version: Version, clause_key: str, user: Any) -> SuggestSection:
    """The section for one clause (two queries: its latest SUGGEST run, that run's candidates;
    the clause is read from the version's text)."""
    clause = find_clause(version.text, clause_key)
    run = (
        ExplainRun.objects.filter(version=version, kind=RunKind.SUGGEST, clause_key=clause_key)
        .select_related("requested_by")
        .order_by("-pk")
        .first()
    )
    children: list[ExplainRun] = []
    if run is not None:
        children = list(
            ExplainRun.objects.filter(parent=run, kind=RunKind.WHATIF)
            .select_related("made_version")
            .order_by("pk")[:SHOWN_CANDIDATES]
        )
    tolerance = float(settings.COPE_SUGGEST_TOLERANCE)
    ranked = rank_candidates(
        [(c.pk, c.summary if c.status in FINISHED else {}) for c in children], tolerance
    )
    by_id = {c.pk: c for c in children}
    available = llm_available()
    stale = bool(
        run is not None
        and run.llm_status == LLM_REQUESTED
        and (run.started_at is None or run.started_at < timezone.now() - resume_after())
    )
    return SuggestSection(
        version=version,
        clause_key=clause_key,
        where=clause.where if clause else clause_key,
        available=available,
        can_ask=bool(
            available
            and clause is not None
            and user.has_perm(ASK_PERM)
            and (run is None or run.llm_status != LLM_REQUESTED or stale)
        ),
        stale=stale,
        run=run,
        candidates=[Candidate(by_id[r.run_id], r) for r in ranked],
        tolerance=tolerance,
    )
