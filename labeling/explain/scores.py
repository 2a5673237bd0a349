"""Writing an attribution run's variant scores (``ExplainScore``, one row each: its pages read
one item's scores at a time; other kinds store a document per chunk, ``labeling.run_scores``):
``COPY`` on PostgreSQL, one ``executemany`` ``INSERT ... ON CONFLICT DO NOTHING`` elsewhere.

Why not ``bulk_create``: a probe chunk is ~4,000 rows (117 items x 34 variants); building and
preparing that many model instances took most of a chunk's recording. Measured on PostgreSQL
for 4,080 rows, commit included: ``bulk_create`` 140-220 ms, ``COPY`` 31-36 ms, ``COPY``
through a staging table 44-51 ms.

Idempotency: ``record_explain_result`` writes a chunk's scores only on the delivery that moves
the chunk to done, under the run row's lock, so a re-delivered answer writes nothing. A
conflict on (run, item, key) can still come from elsewhere: a carve-out run sends one item in
several chunks (the rewording's, each carve-out's), and a worker that answered keys outside its
chunk would collide with the other chunk's rows. ``COPY`` cannot skip a conflicting row, so it
runs in a savepoint; one that meets a conflict is undone and the rows go through a temporary
table and ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. Either way the first row written
for a (run, item, key) stays, as ``bulk_create(ignore_conflicts=True)`` kept it. The column
list is named from ``ExplainScore._meta``; a test checks ``SCORE_FIELDS`` against the model's
fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction

from labeling.models import ExplainScore

# The fields written, in the order ``_values`` gives them; the primary key comes from its
# sequence. Every other concrete field of ``ExplainScore`` must be here.
SCORE_FIELDS = ("run", "item", "key", "label", "p1", "margin", "delta", "flipped", "error")
_STAGING = "explain_score_in"


class ScoreRow(NamedTuple):
    item_id: int
    key: str
    label: int | None
    p1: float | None
    margin: float | None
    delta: float | None
    flipped: bool
    error: str


def _column(name: str) -> str:
    for f in ExplainScore._meta.concrete_fields:
        if f.name == name and f.column:
            return connection.ops.quote_name(f.column)
    raise LookupError(f"ExplainScore has no column for {name!r}")


def _columns() -> str:
    return ", ".join(_column(name) for name in SCORE_FIELDS)


def _values(run_id: int, row: ScoreRow) -> tuple[Any, ...]:
    return (run_id, *row)


def write_scores(run_id: int, rows: Sequence[ScoreRow]) -> None:
    """Store ``rows`` under ``run_id``; a (run, item, key) already stored keeps its row."""
    if not rows:
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _copy_scores(run_id, rows)
        else:
            _insert_scores(run_id, rows)


def _insert_scores(run_id: int, rows: Sequence[ScoreRow]) -> None:
    table = connection.ops.quote_name(ExplainScore._meta.db_table)
    placeholders = ", ".join(["%s"] * len(SCORE_FIELDS))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({_columns()}) VALUES ({placeholders}) ON CONFLICT DO NOTHING",
            [_values(run_id, row) for row in rows],
        )


def _copy_scores(run_id: int, rows: Sequence[ScoreRow]) -> None:
    try:
        with transaction.atomic():  # a savepoint: a conflict undoes this COPY alone
            _copy(ExplainScore._meta.db_table, run_id, rows)
    except IntegrityError:
        _copy_through_staging(run_id, rows)


def _copy(table: str, run_id: int, rows: Sequence[ScoreRow]) -> None:
    name = connection.ops.quote_name(table)
    # Django's cursor wraps psycopg's, which alone speaks COPY; its errors become Django's
    # (``IntegrityError``) only inside ``wrap_database_errors``.
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {name} ({_columns()}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(_values(run_id, row))


def _copy_through_staging(run_id: int, rows: Sequence[ScoreRow]) -> None:
    table = connection.ops.quote_name(ExplainScore._meta.db_table)
    columns = _columns()
    with connection.cursor() as cursor:
        # Made once per connection, emptied at every commit (and below, for a second write
        # in one transaction). Only the written columns, without the table's constraints.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS "
            f"AS SELECT {columns} FROM {table} WITH NO DATA"
        )
    _copy(_STAGING, run_id, rows)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_STAGING} "
            "ON CONFLICT DO NOTHING"
        )
        cursor.execute(f"DELETE FROM {_STAGING}")
