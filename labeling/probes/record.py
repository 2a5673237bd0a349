"""What the run engine calls when a probe or carve-out run finishes.

``labeling.explain.record.maybe_finish_run`` calls ``finish_run`` under the run row's lock, once
the run's status is final: a probe run gets its ``summary``; a carve-out run writes each
signed-off carve-out's label and p(1) under its policy (``Carveout.label_after``/``p1_after``)
and recomputes its parent probe's summary. A given-up chunk answered late reopens the run, and
its second finish writes both again: the summary always reads every score recorded.

This module reads the engine's tables only (no import of the engine), so the engine can call it.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import transaction

from labeling.models import (
    Carveout,
    CarveoutStatus,
    ExplainChunk,
    ExplainRun,
    Item,
    RunKind,
)
from labeling.probes.analysis import CarveoutState, ClauseRef, ProbeItem, summarize
from labeling.run_scores import run_labels, run_scores
from worker.clauses import parse_clauses
from worker.policy_text import parse_policy
from worker.probes import REWORDING_KEY, build_probe_variants
from worker.variants import Variant, resolve

CARVEOUT_PREFIX = "CO:"


@functools.lru_cache(maxsize=8)
def probe_variants(text: str) -> tuple[Variant, ...]:
    """``worker.probes.build_probe_variants``, built once per process for a version's text."""
    return tuple(build_probe_variants(text))


def run_item_ids(run_id: int) -> list[int]:
    """The run's items, in chunk order (each once)."""
    chunks = ExplainChunk.objects.filter(run_id=run_id).order_by("index")
    ids = (i for item_ids in chunks.values_list("item_ids", flat=True) for i in item_ids)
    return list(dict.fromkeys(int(i) for i in ids))


def _labels(run_ids: list[int], key: str | None = None) -> dict[int, dict[str, int | None]]:
    """{item: {variant key: label}} of runs' scores (later runs win), ``key`` alone if given."""
    return run_labels(sorted(run_ids), key=key)


@transaction.atomic(savepoint=False)  # inside the run's recording: its transaction, no savepoint
def summarize_probe(run_id: int) -> dict[str, Any]:
    """Recompute a probe run's summary (given a carve-out run: its parent's) from its scores,
    its carve-out runs' and its carve-outs; save it on the run and return it. The reads grow
    with the run's own size (``COPE_PROBE_ITEMS`` items times its variants), never with the
    data."""
    run = (  # not the run's variant texts nor its old summary (large JSON)
        ExplainRun.objects.select_related("version")
        .only("kind", "parent_id", "items_total", "backend", "weak_backend", "version__text")
        .get(pk=run_id)
    )
    if run.kind == RunKind.CARVEOUT and run.parent_id is not None:
        return summarize_probe(run.parent_id)  # a carve-out run's figures are its parent's
    if run.kind != RunKind.PROBE or run.version is None:
        raise ValueError(f"run {run_id} is not a probe run")
    text = run.version.text
    variants = probe_variants(text)
    ids = run_item_ids(run_id)
    tags = dict(Item.objects.filter(pk__in=ids).order_by().values_list("pk", "tag"))
    scores = _labels([run_id])
    items = [ProbeItem(pk, resolve(variants, scores.get(pk, {})), tags.get(pk, "")) for pk in ids]
    children = list(
        ExplainRun.objects.filter(parent_id=run_id, kind=RunKind.CARVEOUT)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    reworded = {pk: k.get(REWORDING_KEY) for pk, k in _labels(children, REWORDING_KEY).items()}
    carveouts = [
        CarveoutState(status, label_after, item_id)
        for status, label_after, item_id in Carveout.objects.filter(run_id=run_id).values_list(
            "status", "label_after", "item_id"
        )
    ]
    summary = summarize(
        items,
        total=run.items_total,
        codes=parse_policy(text).label_codes(),
        clauses=[ClauseRef(c.key, c.where, c.text) for c in parse_clauses(text)],
        backend=run.backend,
        weak=run.is_weak,
        reworded=reworded,
        carveouts=carveouts,
    )
    ExplainRun.objects.filter(pk=run_id).update(summary=summary)
    return summary


def finish_carveouts(run_id: int) -> None:
    """Each signed-off carve-out scored by this run gets its label and p(1) under its policy;
    then the parent probe's summary is recomputed."""
    parent_id = ExplainRun.objects.filter(pk=run_id).values_list("parent_id", flat=True).first()
    if parent_id is None:
        return
    for score in run_scores([run_id]):
        key, label, p1 = score.key, score.label, score.p1
        pk = key[len(CARVEOUT_PREFIX) :]
        if key.startswith(CARVEOUT_PREFIX) and pk.isdigit() and label is not None:
            Carveout.objects.filter(
                pk=int(pk), run_id=parent_id, status=CarveoutStatus.APPROVED
            ).update(label_after=label, p1_after=p1)
    summarize_probe(parent_id)
