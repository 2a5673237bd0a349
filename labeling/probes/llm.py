"""A probe's LLM parts: the carve-outs an author signs off, and a rewording of the whole policy.

Once a probe run has finished, ``request_probe_llm`` sends one request to the model workers
(``worker.probe_llm`` on ``gpu``, after commit): the version's text and up to
``COPE_PROBE_CARVEOUTS`` items the version labels 1, each with the label whose Includes made it
1 (the first label whose ``DROP:<code>`` variant turned it 0; else the policy's first label).
The worker's LLM (``COPE_TWIN_BACKEND``, the twin writer) writes a fresh twin of the policy and,
per item, one Excludes criterion exempting exactly that item's case; the answer comes back
through ``labeling.record_probe_llm`` on ``default`` and ``record_probe_llm_result`` writes it
once (the run's ``llm_status`` moves from requested exactly once: a redelivered answer changes
nothing). GPU hosts never see the database.

An author or admin then signs each carve-out off or rejects it (``decide_carveout``); scoring
the signed-off ones and the rewording is a carve-out run (``labeling.probes.services``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from cope_studio.celery import app as celery_app
from labeling.models import (
    Carveout,
    CarveoutStatus,
    ExplainRun,
    ExplainStatus,
    Item,
    RunKind,
)
from labeling.run_scores import run_scores
from policies.services import twin_generation_enabled
from worker.carveouts import carveout_problem, valid_label_code
from worker.contract import GPU_QUEUE
from worker.contract_llm import PROBE_LLM_TASK, CarveoutAsk, ProbeLLMRequest, ProbeLLMResult
from worker.policy_text import parse_policy, twin_problems
from worker.probes import BASE_KEY, build_probe_variants
from worker.probes import DROP as DROP_KIND

log = logging.getLogger(__name__)

# ExplainRun.llm_status
LLM_NONE, LLM_REQUESTED, LLM_DONE, LLM_FAILED = "", "requested", "done", "failed"
# Who may sign off or reject a carve-out: those who run jobs (authors and admins).
DECIDE_PERM = "labeling.change_job"
FINISHED = (ExplainStatus.SUCCEEDED, ExplainStatus.PARTIAL)
NO_BACKEND_MESSAGE = (
    "Carve-outs and the rewording test need an LLM backend: set COPE_TWIN_BACKEND (with "
    "COPE_TWIN_MODEL, or COPE_TWIN_BASE_URL and COPE_TWIN_OPENAI_MODEL) on the web app and the "
    "GPU worker."
)
# The section lists at most this many carve-outs (a run has at most COPE_PROBE_CARVEOUTS per
# request; a failed request asked again may add a few more).
SHOWN_CARVEOUTS = 200


class CarveoutError(Exception):
    """A sign-off that cannot happen (already decided, not allowed); the message says why."""


def llm_available() -> bool:
    """Whether an LLM backend is configured (the same switch as the twin generator)."""
    return twin_generation_enabled()


def send_probe_llm_request(request: dict[str, Any]) -> None:
    """Hand a probe's LLM request (a ``ProbeLLMRequest`` as a dict) to the model workers."""
    celery_app.send_task(PROBE_LLM_TASK, args=[request], queue=GPU_QUEUE)


def _positive(run: ExplainRun, item_ids: list[int] | None = None) -> set[int]:
    """The run's items (of ``item_ids`` when given) its version labels 1."""
    scores = run_scores([run.pk], keys=[BASE_KEY], item_ids=item_ids)
    return {s.item_id for s in scores if s.label == 1}


def _labels_from_drops(run: ExplainRun, item_ids: list[int], text: str) -> dict[int, str]:
    """Item -> the first label (in policy order) whose DROP variant turned it 0: that label's
    Includes made it 1. A DROP variant whose text an earlier variant has was scored under
    that one's key (``same_as``), so its labels are read there."""
    stored = {
        v.clause_key: v.same_as or v.key for v in build_probe_variants(text) if v.kind == DROP_KIND
    }
    codes = [code for code in stored if valid_label_code(code)]
    by_key = {stored[code]: code for code in reversed(codes)}  # a shared key: the first code
    found: dict[int, set[str]] = {}
    for score in run_scores([run.pk], keys=list(by_key), item_ids=item_ids):
        if score.label == 0:
            found.setdefault(score.item_id, set()).add(by_key[score.key])
    return {
        item_id: next(code for code in codes if code in labels) for item_id, labels in found.items()
    }


def build_probe_llm_request(run: ExplainRun) -> ProbeLLMRequest:
    """The request for ``run``: its version's text and up to COPE_PROBE_CARVEOUTS items it
    labels 1, lowest ids first (three bounded queries)."""
    assert run.version is not None
    text = run.version.text
    codes = [label.code for label in parse_policy(text).labels if valid_label_code(label.code)]
    limit = settings.COPE_PROBE_CARVEOUTS if codes else 0
    ids = sorted(_positive(run))[:limit]
    labels = _labels_from_drops(run, ids, text) if ids else {}
    texts = dict(Item.objects.filter(pk__in=ids).values_list("pk", "text")) if ids else {}
    asks = [
        CarveoutAsk(item_id=i, label=labels.get(i, codes[0]), text=texts[i])
        for i in ids
        if i in texts
    ]
    return ProbeLLMRequest(run_id=run.pk, policy=text, items=asks)


def request_probe_llm(run: ExplainRun) -> bool:
    """Ask the LLM for the carve-outs and the rewording of a finished probe run. False (nothing
    sent) without a backend, for a run that is not a finished probe, or when already asked
    (a failed request may be asked again). The claim is a conditional update of
    ``llm_status``; the message leaves after commit."""
    if not llm_available() or run.kind != RunKind.PROBE or run.version_id is None:
        return False
    with transaction.atomic():
        changed = ExplainRun.objects.filter(
            pk=run.pk,
            kind=RunKind.PROBE,
            status__in=FINISHED,
            llm_status__in=(LLM_NONE, LLM_FAILED),
        ).update(llm_status=LLM_REQUESTED, llm_error="", llm_model="", llm_prompt="", rewording="")
        if changed != 1:
            return False
        request = build_probe_llm_request(run).to_dict()
        transaction.on_commit(lambda: send_probe_llm_request(request))
    run.llm_status, run.llm_error, run.llm_model, run.llm_prompt, run.rewording = (
        LLM_REQUESTED,
        "",
        "",
        "",
        "",
    )
    log.info("probe run %s: asked for %d carve-outs", run.pk, len(request["items"]))
    return True


def _rewording(run: ExplainRun, result: ProbeLLMResult) -> tuple[str, str]:
    """(rewording, error): the twin re-checked here as a hand-written twin would be."""
    if not result.rewording.strip():
        return "", result.rewording_error or "The model wrote no rewording and gave no reason."
    assert run.version is not None
    problems = twin_problems(run.version.text, result.rewording)
    if problems:
        return "", "The rewording was rejected: " + " ".join(problems)
    return result.rewording, ""


def _carveout_rows(run: ExplainRun, result: ProbeLLMResult) -> tuple[list[Carveout], list[str]]:
    """The answers kept as proposed carve-outs, and a line per answer not kept. Only items the
    run labels 1, under a label of its version, are kept (one bounded query)."""
    assert run.version is not None
    codes = {label.code for label in parse_policy(run.version.text).labels}
    asked = [a.item_id for a in result.carveouts]
    positive = _positive(run, asked)
    rows: list[Carveout] = []
    problems: list[str] = []
    for answer in result.carveouts:
        criterion = answer.criterion.strip()
        problem = answer.error or carveout_problem(criterion)
        if not problem and (answer.item_id not in positive or answer.label not in codes):
            problem = "Not an item this probe labels 1 under a label of this version."
        if problem:
            problems.append(f"Item #{answer.item_id} ({answer.label}): {problem}")
            continue
        rows.append(
            Carveout(
                run=run,
                item_id=answer.item_id,
                label=answer.label,
                criterion=criterion,
                model=result.model[:300],
                prompt=answer.prompt,
            )
        )
    return rows, problems


def record_probe_llm_result(result: ProbeLLMResult) -> str:
    """Write a worker's answer once: the rewording (re-checked), the carve-outs (proposed) and
    the outcome. ``llm_status`` moves from requested under the run's row lock, so a redelivered
    or late answer is ignored. Failed: the whole request failed, or nothing usable came back
    (the reasons in ``llm_error``). Returns what was done."""
    with transaction.atomic():
        run = (
            ExplainRun.objects.select_for_update(of=("self",))  # not the outer-joined version
            .select_related("version")
            .filter(pk=result.run_id, kind=RunKind.PROBE)
            .first()
        )
        if run is None:
            log.warning("probe LLM answer for unknown run %s dropped", result.run_id)
            return "unknown"
        if run.llm_status != LLM_REQUESTED:
            log.info("probe run %s: LLM answer already recorded; ignored", run.pk)
            return "duplicate"
        rows: list[Carveout] = []
        if result.error:
            rewording, problems = "", [result.error]
        else:
            rewording, rewording_error = _rewording(run, result)
            rows, problems = _carveout_rows(run, result)
            problems = ([rewording_error] if rewording_error else []) + problems
        Carveout.objects.bulk_create(rows, ignore_conflicts=True)
        status = LLM_DONE if rewording or rows else LLM_FAILED
        ExplainRun.objects.filter(pk=run.pk, llm_status=LLM_REQUESTED).update(
            llm_status=status,
            rewording=rewording,
            llm_model=result.model[:300],
            llm_prompt=result.prompt,
            llm_error="\n".join(problems),
        )
    log.info("probe run %s: LLM answer recorded (%s, %d carve-outs)", run.pk, status, len(rows))
    return status


def decide_carveout(carveout: Carveout, *, by: User, approve: bool) -> Carveout:
    """Sign off (``approve``) or reject a proposed carve-out, recording who and when. Only
    authors and admins; only once (a conditional update on the proposed status)."""
    if not by.has_perm(DECIDE_PERM):
        raise CarveoutError("Only authors and admins can sign off or reject a carve-out.")
    status = CarveoutStatus.APPROVED if approve else CarveoutStatus.REJECTED
    changed = Carveout.objects.filter(pk=carveout.pk, status=CarveoutStatus.PROPOSED).update(
        status=status, decided_by=by, decided_at=timezone.now()
    )
    if changed != 1:
        raise CarveoutError("This carve-out was already signed off or rejected.")
    carveout.refresh_from_db()
    return carveout


@dataclass(frozen=True)
class CarveoutSection:
    """What the probe page's carve-out section shows (``_carveouts.html``)."""

    run: ExplainRun | None  # the probe run whose carve-outs these are
    available: bool  # an LLM backend is configured
    carveouts: list[Carveout]
    can_decide: bool
    can_ask: bool  # the run finished and nothing was asked yet (or the request failed)
    approved_unscored: int

    @property
    def waiting(self) -> bool:
        return self.run is not None and self.run.llm_status == LLM_REQUESTED

    @property
    def can_score(self) -> bool:
        return self.can_decide and (
            self.approved_unscored > 0 or bool(self.run and self.run.rewording)
        )

    @property
    def limit(self) -> int:
        return int(settings.COPE_PROBE_CARVEOUTS)


def carveout_section(run: ExplainRun | None, user: User) -> CarveoutSection:
    """The section for a probe run (two queries: the run's carve-outs with their items)."""
    available = llm_available()
    carveouts: list[Carveout] = []
    if run is not None:
        carveouts = list(
            Carveout.objects.filter(run=run)
            .select_related("item", "decided_by")
            .order_by("item_id", "label")[:SHOWN_CARVEOUTS]
        )
    can_decide = user.has_perm(DECIDE_PERM)
    return CarveoutSection(
        run=run,
        available=available,
        carveouts=carveouts,
        can_decide=can_decide,
        can_ask=bool(
            available
            and can_decide
            and run is not None
            and run.status in FINISHED
            and run.llm_status in (LLM_NONE, LLM_FAILED)
        ),
        approved_unscored=sum(
            1 for c in carveouts if c.status == CarveoutStatus.APPROVED and c.label_after is None
        ),
    )
