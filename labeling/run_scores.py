"""The scores of every run but attribution (probe, carve-out, what-if, suggestion, regression):
one columnar document per chunk (``ChunkScores``), and their one reader, ``run_scores``.

Those runs are read a whole run at a time when they finish, never an item at a time, and a row
per item and variant (``ExplainScore``, as attribution keeps) cost more than the model: a probe
chunk's 3,400 rows took longer to build and insert than the CPU baseline took to score them,
where one document takes a few milliseconds. ``run_scores`` also reads ``ExplainScore`` rows,
which runs recorded before the documents have.

A chunk's document is written once, by the delivery that moves the chunk to done
(``labeling.explain.record``, under the run row's lock), so a re-delivered answer writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Sequence
from typing import Any, NamedTuple

from labeling.models import ChunkScores, ExplainScore
from worker.contract import VariantOutcome


class StoredScore(NamedTuple):
    item_id: int
    key: str
    label: int | None
    p1: float | None
    margin: float | None
    error: str


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def pack_scores(items: Collection[int], outcomes: Sequence[VariantOutcome]) -> dict[str, Any]:
    """The chunk's answers for its own ``items`` as one JSON document: the keys once, then a
    column per figure (a worker cannot write outside its chunk). The first answer for an
    (item, key) stays. A non-finite p(1) or margin (no JSON for it) is stored as missing."""
    keys: dict[str, int] = {}
    seen: set[tuple[int, str]] = set()
    item_col: list[int] = []
    key_col: list[int] = []
    labels: list[int | None] = []
    p1s: list[float | None] = []
    margins: list[float | None] = []
    errors: dict[str, str] = {}
    for o in outcomes:
        if o.item_id not in items or (o.item_id, o.key) in seen:
            continue
        seen.add((o.item_id, o.key))
        if o.error:
            errors[str(len(item_col))] = o.error[:2000]
        item_col.append(o.item_id)
        key_col.append(keys.setdefault(o.key, len(keys)))
        labels.append(o.label)
        p1s.append(_finite(o.p1))
        margins.append(_finite(o.margin))
    return {
        "keys": list(keys),
        "item": item_col,
        "key": key_col,
        "label": labels,
        "p1": p1s,
        "margin": margins,
        "error": errors,
    }


def write_chunk_scores(run_id: int, chunk_id: int, payload: dict[str, Any]) -> int:
    """Store a chunk's document (once: a chunk moves to done once); the scores it holds."""
    count = len(payload["item"])
    ChunkScores.objects.create(chunk_id=chunk_id, run_id=run_id, count=count, payload=payload)
    return count


def _unpack(payload: dict[str, Any]) -> Iterator[StoredScore]:
    keys, errors = payload["keys"], payload["error"]
    columns = zip(
        payload["item"],
        payload["key"],
        payload["label"],
        payload["p1"],
        payload["margin"],
        strict=True,
    )
    for n, (item_id, k, label, p1, margin) in enumerate(columns):
        yield StoredScore(item_id, keys[k], label, p1, margin, errors.get(str(n), ""))


def run_scores(
    run_ids: Sequence[int],
    *,
    keys: Collection[str] | None = None,
    item_ids: Collection[int] | None = None,
) -> Iterator[StoredScore]:
    """The scores of ``run_ids`` (runs in the order given, a later run's after an earlier's),
    ``keys`` and ``item_ids`` alone when given. Within a run each (item, key) comes once: the
    first read (rows, then documents in chunk order). Reads whole documents: a run's size,
    never the data's."""
    for run_id in run_ids:
        seen: set[tuple[int, str]] = set()
        for score in _stored(run_id, keys, item_ids):
            if (score.item_id, score.key) in seen:
                continue
            seen.add((score.item_id, score.key))
            yield score


def _stored(
    run_id: int, keys: Collection[str] | None, item_ids: Collection[int] | None
) -> Iterator[StoredScore]:
    rows = ExplainScore.objects.filter(run_id=run_id)
    if keys is not None:
        rows = rows.filter(key__in=list(keys))
    if item_ids is not None:
        rows = rows.filter(item_id__in=list(item_ids))
    fields = ("item_id", "key", "label", "p1", "margin", "error")
    for row in rows.order_by("pk").values_list(*fields):
        yield StoredScore(*row)
    wanted_keys = None if keys is None else set(keys)
    wanted_items = None if item_ids is None else set(item_ids)
    documents = ChunkScores.objects.filter(run_id=run_id).order_by("chunk_id")
    for payload in documents.values_list("payload", flat=True):
        for score in _unpack(payload):
            if wanted_keys is not None and score.key not in wanted_keys:
                continue
            if wanted_items is None or score.item_id in wanted_items:
                yield score
