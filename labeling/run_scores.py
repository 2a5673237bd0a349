"""The scores of every run but attribution (probe, carve-out, what-if, suggestion, regression):
one row per chunk (``ChunkScores``) holding the chunk's answers as packed columns, and their
readers, ``run_scores`` and ``run_labels``.

Those runs are read a whole run at a time when they finish, never an item at a time, and a row
per item and variant (``ExplainScore``, as attribution keeps) cost more than the model: a probe
chunk's 3,400 rows took longer to build and insert than the CPU baseline took to score them.
As JSON a chunk's figures took 10 ms to insert (the floats' text, then PostgreSQL parsing it);
packed as binary columns (``encode``, 27 bytes a score) 2 ms, and they read back in
microseconds. The readers also read ``ExplainScore`` rows, which runs recorded before the
columns have.

A chunk's row is written once, by the delivery that moves the chunk to done
(``labeling.explain.record``, under the run row's lock), so a re-delivered answer writes nothing.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Collection, Iterator, Sequence
from typing import NamedTuple, cast

from labeling.models import ChunkScores, ExplainScore
from worker.contract import OutcomeColumns, VariantOutcome

# Each column's array type, in the order they are packed: item id, key index, label (-1: none),
# p(1) and margin (NaN: none). Little-endian whatever the machine.
_TYPES = ("q", "H", "b", "d", "d")
_MAX_KEYS = 65535


class StoredScore(NamedTuple):
    item_id: int
    key: str
    label: int | None
    p1: float | None
    margin: float | None
    error: str


def encode(columns: OutcomeColumns) -> bytes:
    """A chunk's answers as packed binary columns (``_TYPES``)."""
    nan = math.nan
    arrays = (
        array("q", columns.item),
        array("H", columns.key),
        array("b", [-1 if x is None else x for x in columns.label]),
        array("d", [nan if x is None else x for x in columns.p1]),
        array("d", [nan if x is None else x for x in columns.margin]),
    )
    if sys.byteorder == "big":
        for column in arrays:
            column.byteswap()
    return b"".join(column.tobytes() for column in arrays)


def decode(keys: list[str], errors: dict[str, str], count: int, data: bytes) -> OutcomeColumns:
    """What ``encode`` packed, with the row's keys and errors."""
    items, key_col, labels, p1s, margins = _arrays(data, count, len(_TYPES))
    return OutcomeColumns(
        keys=keys,
        key=_ints(key_col),
        item=_ints(items),
        label=_labels(labels),
        p1=[None if math.isnan(x) else x for x in p1s],
        margin=[None if math.isnan(x) else x for x in margins],
        errors={int(n): e for n, e in errors.items()},
    )


def _arrays(data: bytes, count: int, columns: int) -> list[array[int] | array[float]]:
    """The first ``columns`` packed columns of ``count`` answers."""
    arrays: list[array[int] | array[float]] = []
    at = 0
    for code in _TYPES[:columns]:
        column = array(code)
        size = column.itemsize * count
        column.frombytes(data[at : at + size])
        if sys.byteorder == "big":
            column.byteswap()
        arrays.append(column)
        at += size
    return arrays


def _ints(column: array[int] | array[float]) -> list[int]:
    return cast("list[int]", column.tolist())  # an integer column ("q", "H")


def _labels(column: array[int] | array[float]) -> list[int | None]:
    return cast("list[int | None]", [None if x < 0 else x for x in column])  # "b": -1 is none


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _all_finite(column: list[float | None]) -> bool:
    """Whether every figure given is finite: a sum is finite only if each term is (an overflow
    makes it infinite too, and the caller then checks figure by figure)."""
    figures = [x for x in column if x is not None] if None in column else column
    return math.isfinite(sum(cast("list[float]", figures)))


def pack_scores(items: Collection[int], outcomes: Sequence[VariantOutcome]) -> OutcomeColumns:
    """The chunk's answers for its own ``items`` (a worker cannot write outside its chunk), the
    first answer for an (item, key) kept, a non-finite p(1) or margin stored as missing, a label
    other than 0 or 1 stored as missing with an error.

    A well-formed answer (every outcome the chunk's, each (item, key) once, every figure finite,
    labels 0 or 1, few enough keys to pack) is kept as its columns, checked a column at a time;
    anything else is read outcome by outcome."""
    columns = OutcomeColumns.of(outcomes)
    if (
        len(set(zip(columns.item, columns.key, strict=True))) == len(columns)
        and set(columns.item) <= set(items)
        and set(columns.label) <= {0, 1, None}
        and _all_finite(columns.p1)
        and _all_finite(columns.margin)
        and len(columns.keys) <= _MAX_KEYS
    ):
        errors = {n: e[:2000] for n, e in columns.errors.items()}
        return OutcomeColumns(
            columns.keys,
            columns.key,
            columns.item,
            columns.label,
            columns.p1,
            columns.margin,
            errors,
        )
    return _pack_one_by_one(items, columns)


def _pack_one_by_one(items: Collection[int], outcomes: Sequence[VariantOutcome]) -> OutcomeColumns:
    packed = OutcomeColumns([], [], [], [], [], [], {})
    keys: dict[str, int] = {}
    seen: set[tuple[int, str]] = set()
    for o in outcomes:
        if o.item_id not in items or (o.item_id, o.key) in seen:
            continue
        if o.key not in keys and len(keys) >= _MAX_KEYS:
            continue  # no run sends this many variants in one chunk
        seen.add((o.item_id, o.key))
        label = o.label if o.label in (0, 1) else None
        error = o.error or ("" if label == o.label else f"Label {o.label!r} is neither 0 nor 1.")
        if error:
            packed.errors[len(packed)] = error[:2000]
        packed.item.append(o.item_id)
        packed.key.append(keys.setdefault(o.key, len(keys)))
        packed.label.append(label)
        packed.p1.append(_finite(o.p1))
        packed.margin.append(_finite(o.margin))
    packed.keys.extend(keys)
    return packed


def write_chunk_scores(run_id: int, chunk_id: int, packed: OutcomeColumns) -> int:
    """Store a chunk's answers (once: a chunk moves to done once); the scores they hold."""
    ChunkScores.objects.create(
        chunk_id=chunk_id,
        run_id=run_id,
        count=len(packed),
        keys=packed.keys,
        errors={str(n): e for n, e in packed.errors.items()},
        columns=encode(packed),
    )
    return len(packed)


def _documents(run_id: int) -> Iterator[OutcomeColumns]:
    rows = ChunkScores.objects.filter(run_id=run_id).order_by("chunk_id")
    for keys, errors, count, data in rows.values_list("keys", "errors", "count", "columns"):
        yield decode(keys, errors, count, bytes(data))


def run_scores(
    run_ids: Sequence[int],
    *,
    keys: Collection[str] | None = None,
    item_ids: Collection[int] | None = None,
) -> Iterator[StoredScore]:
    """The scores of ``run_ids`` (runs in the order given, a later run's after an earlier's),
    ``keys`` and ``item_ids`` alone when given. Within a run each (item, key) comes once: the
    first read (rows, then chunks in id order). Reads whole chunks: a run's size, never the
    data's."""
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
    for chunk in _documents(run_id):
        columns = zip(chunk.item, chunk.key, chunk.label, chunk.p1, chunk.margin, strict=True)
        for n, (item_id, k, label, p1, margin) in enumerate(columns):
            key = chunk.keys[k]
            if wanted_keys is not None and key not in wanted_keys:
                continue
            if wanted_items is None or item_id in wanted_items:
                yield StoredScore(item_id, key, label, p1, margin, chunk.errors.get(n, ""))


def _label_columns(
    run_id: int,
) -> Iterator[tuple[list[str], list[int], list[int], list[int | None]]]:
    """(keys, item, key, label) of each of the run's chunks: the figures are not decoded."""
    rows = ChunkScores.objects.filter(run_id=run_id).order_by("chunk_id")
    for keys, count, data in rows.values_list("keys", "count", "columns"):
        items, key_col, labels = _arrays(bytes(data), count, 3)
        yield keys, _ints(items), _ints(key_col), _labels(labels)


def run_labels(
    run_ids: Sequence[int], *, key: str | None = None
) -> dict[int, dict[str, int | None]]:
    """``{item: {variant key: label}}`` of ``run_ids`` (a later run's label wins; within a run
    the first stored, as ``run_scores``), ``key`` alone if given: what the summaries read,
    straight from the columns."""
    out: dict[int, dict[str, int | None]] = {}
    for run_id in run_ids:
        run: dict[int, dict[str, int | None]] = {}
        rows = ExplainScore.objects.filter(run_id=run_id)
        if key is not None:
            rows = rows.filter(key=key)
        for item_id, k, label in rows.order_by("pk").values_list("item_id", "key", "label"):
            run.setdefault(item_id, {}).setdefault(k, label)
        for keys, item_col, key_col, label_col in _label_columns(run_id):
            if key is not None and key not in keys:
                continue
            wanted = None if key is None else keys.index(key)
            for item_id, at, label in zip(item_col, key_col, label_col, strict=True):
                if wanted is not None and at != wanted:
                    continue
                labels = run.get(item_id)
                if labels is None:
                    run[item_id] = {keys[at]: label}
                elif keys[at] not in labels:
                    labels[keys[at]] = label
        for item_id, labels in run.items():
            out.setdefault(item_id, {}).update(labels)
    return out
