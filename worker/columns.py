"""An explain chunk's outcomes and their wire form (``worker.contract.ExplainResult``).

A probe chunk's answer holds thousands of scores (every variant times every item). Sent as a
dict per score, reading one back built an object per score and checked each field (a third of
the bookkeeping worker's time for a probe), and storing it transposed them back into columns
(``labeling.run_scores``). So the answer travels as columns, one list per figure, and is read
with a type check per column. Answers in the older form (``"outcomes"``: a dict per score) are
still read, converted once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, overload


class ColumnsError(ValueError):
    """Outcome columns that do not fit together (lengths, key indexes)."""


class VariantOutcome(NamedTuple):
    """One item under one variant: label, p(1) and the answer's logit margin
    (``logit("1") - logit("0")``, the ranking figure: from the model where the backend reports
    it, else ``margin_from_p1(p1)``), or an error and none of them."""

    key: str
    item_id: int
    label: int | None
    p1: float | None
    margin: float | None
    error: str = ""


_NUMBER = {float, type(None)}
_LABEL = {int, type(None)}


class OutcomeColumns(Sequence[VariantOutcome]):
    """Outcomes as columns: ``key`` indexes ``keys`` (distinct), ``errors`` by position (an
    outcome without one has none). Reads as a sequence of ``VariantOutcome``; equal to any
    sequence of the same outcomes."""

    __slots__ = ("errors", "item", "key", "keys", "label", "margin", "p1")

    def __init__(
        self,
        keys: list[str],
        key: list[int],
        item: list[int],
        label: list[int | None],
        p1: list[float | None],
        margin: list[float | None],
        errors: dict[int, str] | None = None,
    ) -> None:
        if len({len(key), len(item), len(label), len(p1), len(margin)}) != 1:
            raise ColumnsError("outcome columns differ in length")
        if len(set(keys)) != len(keys):
            raise ColumnsError("outcome keys repeat")
        if key and (min(key) < 0 or max(key) >= len(keys)):
            raise ColumnsError("an outcome's key index is out of range")
        errors = errors or {}
        if errors and (min(errors) < 0 or max(errors) >= len(item)):
            raise ColumnsError("an outcome's error is out of range")
        self.keys, self.key, self.item = keys, key, item
        self.label, self.p1, self.margin = label, p1, margin
        self.errors = errors

    @classmethod
    def of(cls, outcomes: Iterable[VariantOutcome]) -> OutcomeColumns:
        """The same outcomes as columns (given columns, themselves)."""
        if isinstance(outcomes, OutcomeColumns):
            return outcomes
        index: dict[str, int] = {}
        columns = cls([], [], [], [], [], [], {})
        for n, o in enumerate(outcomes):
            columns.key.append(index.setdefault(o.key, len(index)))
            columns.item.append(o.item_id)
            columns.label.append(o.label)
            columns.p1.append(o.p1)
            columns.margin.append(o.margin)
            if o.error:
                columns.errors[n] = o.error
        columns.keys.extend(index)
        return columns

    def __len__(self) -> int:
        return len(self.item)

    @overload
    def __getitem__(self, n: int) -> VariantOutcome: ...

    @overload
    def __getitem__(self, n: slice) -> list[VariantOutcome]: ...

    def __getitem__(self, n: int | slice) -> VariantOutcome | list[VariantOutcome]:
        if isinstance(n, slice):
            return list(self)[n]
        if n < 0:
            n += len(self)
        if not 0 <= n < len(self):
            raise IndexError(n)
        return VariantOutcome(
            self.keys[self.key[n]],
            self.item[n],
            self.label[n],
            self.p1[n],
            self.margin[n],
            self.errors.get(n, ""),
        )

    def __iter__(self) -> Iterator[VariantOutcome]:
        keys, errors = self.keys, self.errors
        columns = zip(self.key, self.item, self.label, self.p1, self.margin, strict=True)
        for n, (k, item_id, label, p1, margin) in enumerate(columns):
            yield VariantOutcome(keys[k], item_id, label, p1, margin, errors.get(n, ""))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable lists, as a list is

    def __repr__(self) -> str:
        return f"OutcomeColumns({list(self)!r})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "key": self.key,
            "item": self.item,
            "label": self.label,
            "p1": self.p1,
            "margin": self.margin,
            "errors": {str(n): e for n, e in self.errors.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutcomeColumns:
        """Columns as sent. JSON's own types (str keys and errors, int indexes, ids and labels,
        float figures) are taken as they are, checked a column at a time; other types are
        converted value by value, which raises on what is not a number."""
        keys, key, item = data["keys"], data["key"], data["item"]
        label, p1, margin = data["label"], data["p1"], data["margin"]
        errors = data.get("errors") or {}
        for column in (keys, key, item, label, p1, margin):
            if not isinstance(column, list):
                raise ColumnsError("outcome columns must be lists")
        if not isinstance(errors, dict):
            raise ColumnsError("outcome errors must map positions to messages")
        if set(map(type, keys)) - {str}:
            keys = [str(k) for k in keys]
        if set(map(type, key)) - {int}:
            key = [int(k) for k in key]
        if set(map(type, item)) - {int}:
            item = [int(i) for i in item]
        if set(map(type, label)) - _LABEL:
            label = [None if x is None else int(x) for x in label]
        if set(map(type, p1)) - _NUMBER:
            p1 = _floats(p1)
        if set(map(type, margin)) - _NUMBER:
            margin = _floats(margin)
        return cls(keys, key, item, label, p1, margin, {int(n): str(e) for n, e in errors.items()})


def _floats(column: Sequence[Any]) -> list[float | None]:
    return [None if x is None else float(x) for x in column]


def columns_from_rows(raw: list[dict[str, Any]]) -> OutcomeColumns:
    """Outcomes in the older wire form (a dict per score: ``key``, ``item_id``, ``label``,
    ``p1``, ``margin``, ``error``), as columns."""
    if not isinstance(raw, list):
        raise ColumnsError("outcomes must be a list")
    index: dict[str, int] = {}
    key = [index.setdefault(str(o["key"]), len(index)) for o in raw]
    return OutcomeColumns.from_dict(
        {
            "keys": list(index),
            "key": key,
            "item": [o["item_id"] for o in raw],
            "label": [o["label"] for o in raw],
            "p1": [o["p1"] for o in raw],
            "margin": [o.get("margin") for o in raw],
            "errors": {n: o["error"] for n, o in enumerate(raw) if o.get("error")},
        }
    )
