"""Starting and cancelling probe runs and carve-out runs (the engine is ``labeling.explain``).

A probe run is created with its chunks in one transaction (the version row locked, so two
clicks make two numbered runs, never a clash) and its first chunks go out once committed; the
engine's flow control, resend (the jobs' beat task), give-up and record do the rest, and its
finish writes the summary (``labeling.probes.record``).
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.db import transaction

from labeling.explain.dispatch import ACTIVE, Chunk, create_run, next_attempt
from labeling.explain.services import SCORES_PER_CHUNK, cancel_explain
from labeling.jobs.evaluation import evaluation_set
from labeling.models import (
    Carveout,
    CarveoutStatus,
    ExplainRun,
    ExplainStatus,
    Item,
    RunKind,
)
from labeling.probes.record import probe_variants, run_item_ids, summarize_probe
from labeling.run_scores import run_scores
from policies.models import Version
from worker.probes import REWORDING_KEY, build_carveout_variants, carveout_key
from worker.variants import Variant, distinct

__all__ = [
    "ProbeError",
    "cancel_probe",
    "probe_items",
    "start_carveout_run",
    "start_probe",
    "summarize_probe",
]

FINISHED = (ExplainStatus.SUCCEEDED, ExplainStatus.PARTIAL)


class ProbeError(Exception):
    """A probe that cannot start; the message is for the person who asked."""


def probe_items(version: Version, limit: int) -> tuple[int, list[int]]:
    """(the evaluation set's id, up to ``limit`` of its item ids): all of them when the set is
    small enough, else a sample seeded by the version (the same items each time it is probed,
    so two probes of one version compare). Raises ``ProbeError`` without an evaluation set."""
    sample_set = evaluation_set(version.policy)
    if sample_set is None:
        raise ProbeError(
            "This policy has no evaluation set yet: run a job on a sample set first, and the "
            "probe will use the set the versions are compared on."
        )
    ids = list(
        Item.objects.filter(sample_set=sample_set).order_by("pk").values_list("pk", flat=True)
    )
    if len(ids) > limit:
        ids = sorted(random.Random(f"probe-{version.pk}").sample(ids, limit))
    if not ids:
        raise ProbeError(f"The evaluation set “{sample_set.name}” has no items.")
    return sample_set.pk, ids


def _create_run(
    *,
    kind: str,
    version: Version,
    variants: list[Variant],
    chunks: list[Chunk],
    by: Any,
    **fields: Any,
) -> ExplainRun:
    """A run of ``version`` and its chunks; the caller holds the version row's lock."""
    return create_run(
        chunks=chunks,
        kind=kind,
        version=version,
        attempt=next_attempt(version=version, kind=kind),
        requested_by=by,
        variant_specs=[{"key": v.key, "policy": v.policy} for v in variants],
        variants=len(variants),
        **fields,
    )


def start_probe(version: Version, *, by: Any, max_items: int | None = None) -> ExplainRun:
    """Probe a version on up to ``max_items`` (default ``COPE_PROBE_ITEMS``) items of its
    policy's evaluation set. Raises ``ProbeError`` while a probe of it runs, or without a set."""
    limit = int(settings.COPE_PROBE_ITEMS) if max_items is None else max_items
    if limit <= 0:
        raise ProbeError("A probe needs at least one item.")
    sample_set_id, ids = probe_items(version, limit)
    variants = distinct(probe_variants(version.text))
    size = max(1, SCORES_PER_CHUNK // len(variants))
    with transaction.atomic():
        Version.objects.select_for_update().filter(pk=version.pk).order_by("pk").values(
            "pk"
        ).first()
        if ExplainRun.objects.filter(
            version=version, kind=RunKind.PROBE, status__in=ACTIVE
        ).exists():
            raise ProbeError("A probe of this version is still running; wait or cancel it.")
        return _create_run(
            kind=RunKind.PROBE,
            version=version,
            variants=variants,
            chunks=[(ids[i : i + size], None) for i in range(0, len(ids), size)],
            by=by,
            sample_set_id=sample_set_id,
            chunk_size=size,
        )


def cancel_probe(run: ExplainRun) -> bool:
    """Cancel an active probe or carve-out run (the engine's cancel: unsent chunks are never
    sent, late answers ignored). Returns whether this call cancelled it."""
    return cancel_explain(run)


def _rewording_scored(parent: ExplainRun) -> bool:
    children = ExplainRun.objects.filter(parent=parent, kind=RunKind.CARVEOUT).order_by("pk")
    ids = list(children.values_list("pk", flat=True))
    return any(True for _ in run_scores(ids, keys=[REWORDING_KEY]))


def start_carveout_run(parent: ExplainRun, *, by: Any) -> ExplainRun:
    """Score the parent probe's signed-off carve-outs not scored yet (each on its own item)
    and, when the parent has a rewording not scored yet, the rewording on every item of the
    parent. Raises ``ProbeError`` when the parent is not a finished probe or nothing is left."""
    if parent.kind != RunKind.PROBE or parent.status not in FINISHED or parent.version is None:
        raise ProbeError("Carve-outs are scored for a finished probe only.")
    version = parent.version
    with transaction.atomic():
        Version.objects.select_for_update().filter(pk=version.pk).order_by("pk").values(
            "pk"
        ).first()
        if ExplainRun.objects.filter(parent=parent, status__in=ACTIVE).exists():
            raise ProbeError("The carve-outs of this probe are being scored; wait or cancel.")
        carveouts = list(
            Carveout.objects.filter(
                run=parent, status=CarveoutStatus.APPROVED, label_after__isnull=True
            ).order_by("pk")
        )
        rewording = "" if _rewording_scored(parent) else parent.rewording
        if not carveouts and not rewording.strip():
            raise ProbeError("No signed-off carve-out or rewording is left to score.")
        try:
            variants = build_carveout_variants(
                version.text, rewording, [(c.pk, c.label, c.criterion) for c in carveouts]
            )
        except ValueError as exc:
            raise ProbeError(f"A carve-out cannot be added to this version's text: {exc}.") from exc
        chunks: list[tuple[list[int], list[str] | None]] = []
        if rewording.strip():
            ids = run_item_ids(parent.pk)
            size = SCORES_PER_CHUNK
            chunks += [([*ids[i : i + size]], [REWORDING_KEY]) for i in range(0, len(ids), size)]
        chunks += [([c.item_id], [carveout_key(c.pk)]) for c in carveouts]
        return _create_run(
            kind=RunKind.CARVEOUT,
            version=version,
            variants=variants,
            chunks=chunks,
            by=by,
            parent=parent,
            sample_set_id=parent.sample_set_id,
            chunk_size=1,
        )
