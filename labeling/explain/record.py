"""Recording an explain chunk's answer, analysing its items, and finishing the run.

Answers come back as ``labeling.record_explain`` tasks on ``default``. As with a job's chunks
(``labeling.jobs.results``), a chunk moves queued -> done/failed under the run row's lock and
only the delivery that moved it writes anything: a re-sent chunk's second answer changes
nothing. A success may still move a chunk that was given up (its labels win); a failure never
replaces scores. An attribution run stores a row per score (``ExplainScore``, written by
``labeling.explain.scores``) and analyses its items at once (``analysis.explain_item``); every
other kind stores a chunk's answers as one document (``labeling.run_scores``) and draws its
conclusions when it finishes (``labeling.runs.finish_run``).

Outcomes are honest: **succeeded** when every item was explained, **partial** when some
could not be (the run says how many were), **failed** with the worker's error when none was.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from labeling.explain.analysis import Conclusion, Score, explain_item, variant_tests
from labeling.explain.dispatch import ACTIVE, claim_next_chunks, fail_items, job_variants, lock_run
from labeling.explain.scores import ScoreRow, write_scores
from labeling.gold.services import current_gold
from labeling.models import (
    ChunkStatus,
    ExplainChunk,
    ExplainFinding,
    ExplainItem,
    ExplainRun,
    ExplainStatus,
    ExplainVerdict,
    Job,
    RunKind,
)
from labeling.run_scores import pack_scores, write_chunk_scores
from labeling.runs import finish_run
from worker.contract import ExplainResult
from worker.probes import BASE_KEY
from worker.variants import Variant


@dataclass(frozen=True)
class RecordOutcome:
    action: str  # "recorded", "failed", "duplicate", "ignored"
    finished: bool = False


def record_explain_result(result: ExplainResult) -> RecordOutcome:
    """Write one explain chunk's answer, idempotently, and send the run's next chunk."""
    started = time.perf_counter()
    with transaction.atomic():
        run = lock_run(result.run_id)
        if run is None or run[0] == ExplainStatus.CANCELLED:
            return RecordOutcome("ignored")
        chunk = (
            ExplainChunk.objects.filter(pk=result.chunk_id, run_id=result.run_id)
            .values("item_ids", "status")
            .first()
        )
        if chunk is None:
            return RecordOutcome("ignored")
        was = chunk["status"]
        if was == ChunkStatus.DONE or (result.error and was != ChunkStatus.QUEUED):
            return RecordOutcome("duplicate")
        if run[0] not in ACTIVE and was != ChunkStatus.FAILED:
            return RecordOutcome("ignored")
        job_id, kind = run[1], run[2]
        items = [int(i) for i in chunk["item_ids"]]
        if result.error:
            # Only an attribution run writes conclusions (a what-if run also has a job).
            concludes = job_id if kind == RunKind.ATTRIBUTION else None
            counters = _mark_failed(result, concludes, items, was)
        else:
            counters = _mark_done(result, job_id, kind, items, was)
        counters.update(_worker_fields(result))
        if run[0] not in ACTIVE:  # a given-up chunk answered after the run finished
            counters.update(status=ExplainStatus.RUNNING, finished_at=None)
        sent_more = claim_next_chunks(result.run_id)
        counters["bookkeeping_seconds"] = F("bookkeeping_seconds") + time.perf_counter() - started
        ExplainRun.objects.filter(pk=result.run_id).update(**counters)
        finished = not sent_more and maybe_finish_run(result.run_id)
    return RecordOutcome("failed" if result.error else "recorded", finished=finished)


def _worker_fields(result: ExplainResult) -> dict[str, Any]:
    worker = result.worker
    fields: dict[str, Any] = {"model_seconds": F("model_seconds") + result.model_seconds}
    if worker.backend:
        fields.update(
            backend=worker.backend[:40],
            model_id=worker.model_id[:500],
            weak_backend=worker.weak or worker.backend == "embedding",
        )
    return fields


def _mark_failed(
    result: ExplainResult, job_id: int | None, items: list[int], was: str
) -> dict[str, Any]:
    ExplainChunk.objects.filter(pk=result.chunk_id, status=was).update(
        status=ChunkStatus.FAILED,
        finished_at=timezone.now(),
        model_seconds=result.model_seconds,
        error=result.error[:5000],
    )
    if job_id is not None:
        fail_items(result.run_id, job_id, items, result.error[:2000])
    return {
        "chunks_failed": F("chunks_failed") + 1,
        "items_failed": F("items_failed") + len(items),
        "error": result.error[:5000],
    }


def _mark_done(
    result: ExplainResult, job_id: int | None, kind: str, items: list[int], was: str
) -> dict[str, Any]:
    ExplainChunk.objects.filter(pk=result.chunk_id, status=was).update(
        status=ChunkStatus.DONE,
        finished_at=timezone.now(),
        model_seconds=result.model_seconds,
        error="",
    )
    if job_id is not None and kind == RunKind.ATTRIBUTION:
        explained, scores = record_items(result, job_id, items)
    else:
        explained, scores = record_scores(result, kind, items)
    counters: dict[str, Any] = {
        "chunks_done": F("chunks_done") + 1,
        "items_done": F("items_done") + explained,
        "items_failed": F("items_failed") + len(items) - explained,
        "scores": F("scores") + scores,
    }
    if was == ChunkStatus.FAILED:  # take back what giving it up counted
        counters["chunks_failed"] = F("chunks_failed") - 1
        counters["items_failed"] = counters["items_failed"] - len(items)
    return counters


def record_items(result: ExplainResult, job_id: int, items: list[int]) -> tuple[int, int]:
    """Store the chunk's scores, analyse each item, store its conclusion and findings.
    Returns (items explained, scores stored)."""
    job = Job.objects.filter(pk=job_id).values("text_a", "text_b", "version__policy_id").get()
    variants = job_variants(job["text_a"], job["text_b"])
    # Only the chunk's items are read below: a worker cannot write outside its chunk.
    by_item: dict[int, dict[str, Score]] = defaultdict(dict)
    for o in result.outcomes:
        by_item[o.item_id][o.key] = Score(o.label, o.p1, o.margin, o.error[:2000])
    golds = current_gold(policy_id=job["version__policy_id"], item_ids=items)
    rows, conclusions = [], {}
    for item_id in items:
        scores = by_item.get(item_id, {})
        gold = golds[item_id][0]
        conclusions[item_id] = explain_item(
            variants, scores, int(gold) if gold in ("0", "1") else None
        )
        rows += _score_rows(item_id, variants, scores)
    write_scores(result.run_id, rows)
    _store_conclusions(result.run_id, job_id, conclusions, by_item, golds)
    explained = sum(1 for c in conclusions.values() if c.verdict != ExplainVerdict.FAILED)
    return explained, len(rows)


def record_scores(result: ExplainResult, kind: str, items: list[int]) -> tuple[int, int]:
    """Any other run's chunk (probe, carve-out, what-if, suggestion, regression): its answers
    stored as packed columns (``labeling.run_scores``). An item is scored when its ``P`` is
    (probe), or every variant it was sent with is (the others). Returns (items scored, scores
    stored)."""
    packed = pack_scores(set(items), result.outcomes)
    # A score is good with a label and a margin (``analysis.Score.ok``); the packed answer
    # holds each (item, key) once.
    columns = zip(packed.label, packed.margin, strict=True)
    bad = [n for n, (label, margin) in enumerate(columns) if label is None or margin is None]
    if kind == RunKind.PROBE:
        base = packed.keys.index(BASE_KEY) if BASE_KEY in packed.keys else -1
        scored = packed.key.count(base) - sum(1 for n in bad if packed.key[n] == base)
    else:
        scored = len(set(packed.item) - {packed.item[n] for n in bad})
    return scored, write_chunk_scores(result.run_id, result.chunk_id, packed)


def _score_rows(
    item_id: int, variants: tuple[Variant, ...], scores: dict[str, Score]
) -> list[ScoreRow]:
    return [
        ScoreRow(
            item_id,
            t.key,
            t.score.label,
            t.score.p1,
            t.score.margin,
            t.delta,
            t.flipped,
            t.score.error,
        )
        for t in variant_tests(variants, scores)
    ]


def _store_conclusions(
    run_id: int,
    job_id: int,
    conclusions: dict[int, Conclusion],
    scores: dict[int, dict[str, Score]],
    golds: dict[int, tuple[str, str]],
) -> None:
    """Upsert each item's conclusion; replace its findings (a later run's win). An item this
    chunk failed keeps an earlier run's conclusion."""
    ok = {i: c for i, c in conclusions.items() if c.verdict != ExplainVerdict.FAILED}
    failed = [i for i, c in conclusions.items() if c.verdict == ExplainVerdict.FAILED]
    if failed:
        fail_items(run_id, job_id, failed, conclusions[failed[0]].error)
    ExplainItem.objects.bulk_create(
        [_item_row(run_id, job_id, i, c, scores[i], golds[i][0]) for i, c in ok.items()],
        update_conflicts=True,
        unique_fields=["job", "item"],
        update_fields=[
            "run",
            "label_a",
            "label_b",
            "margin_a",
            "margin_b",
            "gold",
            "verdict",
            "clause_a",
            "clause_b",
            "effect",
            "error",
        ],  # fmt: skip
    )
    ExplainFinding.objects.filter(job_id=job_id, item_id__in=list(ok)).delete()
    ExplainFinding.objects.bulk_create(
        [
            ExplainFinding(
                job_id=job_id,
                item_id=i,
                run_id=run_id,
                side=f.side,
                role=f.role,
                clause=f.clause[:200],
                other=f.other[:200],
                effect=f.effect,
                rank=min(f.rank, 32767),
            )
            for i, c in ok.items()
            for f in c.findings
        ],
        batch_size=2000,
    )


def _item_row(
    run_id: int, job_id: int, item_id: int, c: Conclusion, scores: dict[str, Score], gold: str
) -> ExplainItem:
    a, b = scores["A"], scores["B"]
    return ExplainItem(
        job_id=job_id,
        item_id=item_id,
        run_id=run_id,
        label_a=a.label,
        label_b=b.label,
        margin_a=a.margin,
        margin_b=b.margin,
        gold=int(gold) if gold in ("0", "1") else None,
        verdict=c.verdict,
        clause_a=c.clause_a[:200],
        clause_b=c.clause_b[:200],
        effect=c.effect,
        error=c.error,
    )


def maybe_finish_run(run_id: int) -> bool:
    """Finish the run when no chunk is queued (the caller holds the run row's lock)."""
    queued = ExplainChunk.objects.filter(run_id=OuterRef("pk"), status=ChunkStatus.QUEUED)
    # Not the run's variant texts or summary: a probe's are hundreds of kilobytes of JSON.
    run = (
        ExplainRun.objects.only(
            "status", "kind", "items_total", "items_done", "items_failed", "error"
        )
        .annotate(queued=Exists(queued))
        .get(pk=run_id)
    )
    if run.queued or run.status not in ACTIVE:
        return False
    done = "explained" if run.kind == RunKind.ATTRIBUTION else "scored"
    if run.items_failed == 0 and run.items_done >= run.items_total:
        status, error = ExplainStatus.SUCCEEDED, ""
    elif run.items_done == 0:
        status, error = ExplainStatus.FAILED, run.error or f"No item could be {done}."
    else:
        status = ExplainStatus.PARTIAL
        error = (
            f"{done.capitalize()} {run.items_done} of {run.items_total} items; "
            f"{run.items_failed} could not be: {run.error or 'see the failed items'}"
        )
    ExplainRun.objects.filter(pk=run_id).update(
        status=status, error=error, finished_at=timezone.now()
    )
    if run.kind != RunKind.ATTRIBUTION:
        finish_run(run_id, run.kind)
    return True
