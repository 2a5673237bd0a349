"""Writing an import's items: ``COPY`` on PostgreSQL, one ``executemany`` INSERT per batch
elsewhere; and removing them again when an import fails or restarts.

Both writes skip building 5,000 model instances per batch, which is most of ``bulk_create``'s
time at this size (100k items on SQLite: 9.0 s with bulk_create, 4.2 s like this). The column
list is named from ``Item._meta``; a test checks ``ITEM_FIELDS`` against the model's fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from django.db import connection, transaction

from labeling.models import Item

# The fields an import writes, in the order ``_values`` gives them; the primary key comes from
# its sequence. Every other concrete field of ``Item`` must be here.
ITEM_FIELDS = (
    "sample_set",
    "external_id",
    "text",
    "content_hash",
    "metadata",
    "expected_label",
    "row_number",
    "tag",
)


class ItemRow(NamedTuple):
    external_id: str
    text: str
    content_hash: str
    metadata: dict[str, Any]
    expected_label: int | None
    row_number: int
    tag: str = ""


Writer = Callable[[int, list[ItemRow]], None]


def item_writer() -> Writer:
    """``write(sample_set_id, rows)`` for this database: ``COPY`` or ``executemany``."""
    if connection.vendor == "postgresql":
        return _copy_items
    return _insert_items


def _column(name: str) -> str:
    for f in Item._meta.concrete_fields:
        if f.name == name and f.column:
            return connection.ops.quote_name(f.column)
    raise LookupError(f"Item has no column for {name!r}")


def _table_and_columns() -> tuple[str, str]:
    table = connection.ops.quote_name(Item._meta.db_table)
    return table, ", ".join(_column(name) for name in ITEM_FIELDS)


def _values(sample_set_id: int, row: ItemRow) -> tuple[Any, ...]:
    return (
        sample_set_id,
        row.external_id,
        row.text,
        row.content_hash,
        json.dumps(row.metadata),
        row.expected_label,
        row.row_number,
        row.tag,
    )


def _insert_items(sample_set_id: int, rows: list[ItemRow]) -> None:
    table, columns = _table_and_columns()
    placeholders = ", ".join(["%s"] * len(ITEM_FIELDS))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",
            [_values(sample_set_id, row) for row in rows],
        )


def _copy_items(sample_set_id: int, rows: list[ItemRow]) -> None:
    table, columns = _table_and_columns()
    with connection.cursor() as cursor:
        # Django's cursor wraps psycopg's, which alone speaks COPY.
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(_values(sample_set_id, row))


def delete_items(sample_set_id: int) -> None:
    """Remove a failed or restarted import's items in one statement (nothing refers to them:
    a job takes only a ready set).

    Not ``queryset.delete()``: labels, review tasks and gold labels cascade from an item, so
    Django's collector first loads every item id to look for them. Measured on 100,000 items:
    8.4-13 s that way against 1.9-3.3 s for this statement on PostgreSQL, 15-18 s against
    2.6-4.1 s on SQLite (``_raw_delete``, private API, ran as fast as this statement).
    """
    table = connection.ops.quote_name(Item._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {_column('sample_set')} = %s", [sample_set_id])
