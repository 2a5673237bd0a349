"""Item content search on the database's own full-text index (``0013_search_indexes``).

Both engines return ids in id order from a keyset cursor, so a page costs about the same at the
end of a million matches as at the start and no request counts every match: PostgreSQL reads
the GIN index on ``search_vector`` (or walks the primary key checking the stored vector, when
the words are common enough that this finds a page sooner: its planner chooses); SQLite walks
FTS5's doclists in rowid order, and a search within one set adds that set's id token, which
FTS5 intersects inside the index.
"""

from __future__ import annotations

from django.db import connection

from labeling.search.query import Query, to_fts5, to_tsquery


def matching_ids(
    query: Query, *, sample_set_id: int | None = None, after: int | None = None, limit: int
) -> list[int]:
    """Up to ``limit`` ids of items whose text matches ``query``, in id order after ``after``."""
    if not query:
        return []
    if connection.vendor == "postgresql":
        sql, params = _postgresql(query, sample_set_id, after, limit)
    else:
        sql, params = _sqlite(query, sample_set_id, after, limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def matching_ids_sql(query: Query, *, sample_set_id: int) -> tuple[str, list[int | str]]:
    """A subquery of every matching item id in one set, for ``item_id__in=RawSQL(...)``
    filters that page on another table (a job's labels)."""
    if connection.vendor == "postgresql":
        return (
            "SELECT id FROM labeling_item WHERE search_vector @@ to_tsquery('simple', %s) "
            "AND sample_set_id = %s",
            [to_tsquery(query), sample_set_id],
        )
    return (
        "SELECT rowid FROM labeling_item_fts WHERE labeling_item_fts MATCH %s",
        [_in_set(query, sample_set_id)],
    )


def _in_set(query: Query, sample_set_id: int | None) -> str:
    expression = to_fts5(query)
    if sample_set_id is None:
        return expression
    return f'{{sample_set_id}} : "{int(sample_set_id)}" AND {expression}'


def _postgresql(
    query: Query, sample_set_id: int | None, after: int | None, limit: int
) -> tuple[str, list[int | str]]:
    where = ["search_vector @@ to_tsquery('simple', %s)"]
    params: list[int | str] = [to_tsquery(query)]
    if sample_set_id is not None:
        where.append("sample_set_id = %s")
        params.append(sample_set_id)
    if after is not None:
        where.append("id > %s")
        params.append(after)
    params.append(limit)
    return f"SELECT id FROM labeling_item WHERE {' AND '.join(where)} ORDER BY id LIMIT %s", params


def _sqlite(
    query: Query, sample_set_id: int | None, after: int | None, limit: int
) -> tuple[str, list[int | str]]:
    where = ["labeling_item_fts MATCH %s"]
    params: list[int | str] = [_in_set(query, sample_set_id)]
    if after is not None:
        where.append("rowid > %s")
        params.append(after)
    params.append(limit)
    return (
        f"SELECT rowid FROM labeling_item_fts WHERE {' AND '.join(where)} ORDER BY rowid LIMIT %s",
        params,
    )
