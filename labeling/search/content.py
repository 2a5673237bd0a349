"""Item content search on the database's own full-text index (``0016_search_indexes``).

Both engines return ids in id order from a keyset cursor, so no request counts every match and
a page deep in the results costs what the first does: PostgreSQL reads the GIN index on
``search_vector`` or walks the ids in order, chosen per search (``_postgresql_ids``); SQLite
walks FTS5's doclists in rowid order, and a search within one set adds that set's id token,
which FTS5 intersects inside the index.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from labeling.search.query import Query, to_fts5, to_tsquery

# PostgreSQL: a query matching at least this share of items walks the ids in order, at most
# WALK of them (about 30 ms), before it reads the GIN index instead.
COMMON_SHARE = 0.005
# Higher for phrases: the share is that of items holding all their words, and a phrase can be
# far rarer than that (the walk then reads rows for nothing); below it the index's stretches
# (below) bound what it rechecks.
COMMON_SHARE_PHRASE = 0.01
WALK = 10_000
# The walks' most after the first found part of a page: WALK_MORE ids, or up to WALK_MOST where
# the words' items (what the index would read instead) are as many.
WALK_MORE = 30_000
WALK_MOST = 60_000
# The GIN index's plan visits every row it matches (for a phrase, every row holding its words,
# to check their positions, which the index does not keep) before sorting them, so a query
# expected to match more than BITMAP_ROWS items first reads one stretch of ids holding about
# that many: the primary key's range is ANDed into the bitmap. At most STRETCH ids, as the
# primary key's part costs about 0.1 µs an id.
BITMAP_ROWS = 2_000
STRETCH = 150_000
# A prefix matches lexemes too rare for ANALYZE's list as well: counted as at least this share
# (the benchmark's 4-letter prefixes with no listed lexeme match 0.4 to 0.8% of items).
PREFIX_SHARE = 0.003
_SCANS = ("seqscan", "indexscan", "indexonlyscan", "bitmapscan")


def matching_ids(
    query: Query, *, sample_set_id: int | None = None, after: int | None = None, limit: int
) -> list[int]:
    """Up to ``limit`` ids of items whose text matches ``query``, in id order after ``after``."""
    if not query:
        return []
    if connection.vendor == "postgresql":
        return _postgresql_ids(query, sample_set_id, after, limit)
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


def _postgresql_ids(
    query: Query, sample_set_id: int | None, after: int | None, limit: int
) -> list[int]:
    """The plan chosen here from the words' shares in ANALYZE's statistics, not by the
    planner: it prices a rare word at ~1,000 rows and walks the primary key for a page that
    never fills (a full scan), and builds the whole bitmap of a word in most items.

    Common words (``_share`` at least ``COMMON_SHARE``, ``COMMON_SHARE_PHRASE`` for phrases):
    walk ``WALK`` ids in order (the primary key, or ``item_set_id_order`` within a set) checking
    each row's stored vector, and on at the density found while that costs less than the index
    would; a page fills after about ``limit`` / share rows. Then, or for rarer words: the GIN
    index, which costs what its matches number (a phrase's are the items holding its words, each
    read to check their positions): over one or two stretches of ids holding about
    ``BITMAP_ROWS`` of them where it expects more, and to the end for what remains.
    """
    where = ["search_vector @@ to_tsquery('simple', %s)"]
    params: list[int | str] = [to_tsquery(query)]
    if sample_set_id is not None:
        where.append("sample_set_id = %s")
        params.append(sample_set_id)
    with transaction.atomic(), connection.cursor() as cursor:
        ids = _plan_and_run(cursor, query, where, params, sample_set_id, after, limit)
        # Back to the session's values: inside a caller's transaction (a request, a test) a
        # SET LOCAL lasts until that ends. (An error rolls the savepoint back, and them.)
        for name in ("jit", *(f"enable_{scan}" for scan in _SCANS)):
            cursor.execute(f"RESET {name}")
        return ids


def _allow(cursor: CursorWrapper, *scans: str) -> None:
    """Let the planner use only ``scans`` for the next statements (of this transaction)."""
    for scan in _SCANS:
        cursor.execute(f"SET LOCAL enable_{scan} = {'on' if scan in scans else 'off'}")


def _plan_and_run(
    cursor: CursorWrapper,
    query: Query,
    where: list[str],
    params: list[int | str],
    sample_set_id: int | None,
    after: int | None,
    limit: int,
) -> list[int]:
    # Plans here cost little, but a disabled scan adds to a plan's cost and would start JIT.
    cursor.execute("SET LOCAL jit = off")
    ids: list[int] = []
    share = _share(cursor, query)
    rows = _rows(cursor)
    span = 0  # ids a stretch of the index reads (below), when the walk found the density
    phrase = any(len(term.words) > 1 for term in query.terms)
    if share is not None and share >= (COMMON_SHARE_PHRASE if phrase else COMMON_SHARE):
        # A phrase of common words can be much rarer than its words: walk on at the density
        # found while the rest of the page is nearer than the index's cost, which reads the
        # postings of every item holding the words (about as dear as walking one).
        budget = max(WALK_MORE, min(WALK_MOST, int(share * rows)))
        ids, after, span = _walks(cursor, params[0], sample_set_id, after, limit, budget)
        if len(ids) >= limit or after is None:
            return ids[:limit]
    if share is not None and share * rows > BITMAP_ROWS:
        span = min(STRETCH, max(limit, span, int(BITMAP_ROWS / share)))
        more, after = _stretches(
            cursor, where, params, sample_set_id, after, limit - len(ids), span
        )
        ids += more
        if len(ids) >= limit or after is None:
            return ids[:limit]
    _allow(cursor, "bitmapscan")
    bound = [*where, "id > %s"] if after is not None else where
    cursor.execute(
        f"SELECT id FROM labeling_item WHERE {' AND '.join(bound)} ORDER BY id LIMIT %s",
        [*params, *([after] if after is not None else []), limit - len(ids)],
    )
    return ids + [row[0] for row in cursor.fetchall()]


def _walks(
    cursor: CursorWrapper,
    tsquery: int | str,
    sample_set_id: int | None,
    after: int | None,
    limit: int,
    budget: int,
) -> tuple[list[int], int | None, int]:
    """A walk of ``WALK`` ids, then more, each as long as the rest of the page needs at the
    density found so far, while they stay within ``budget`` ids: the matches, the last id
    walked (None at the end, or with a page) and how many ids the rest of the page needs."""
    ids, after = _walk(cursor, tsquery, sample_set_id, after, limit, WALK)
    walked = WALK
    while len(ids) < limit and after is not None:
        needed = (limit - len(ids)) * walked * 3 // 2 // max(len(ids), 1)
        if not ids or needed > budget:
            return ids, after, needed if ids else 0
        more, after = _walk(cursor, tsquery, sample_set_id, after, limit - len(ids), needed)
        ids += more
        walked += needed
        budget -= needed
    return ids, after, 0


def _stretches(
    cursor: CursorWrapper,
    where: list[str],
    params: list[int | str],
    sample_set_id: int | None,
    after: int | None,
    limit: int,
    span: int,
) -> tuple[list[int], int | None]:
    """A stretch of ``span`` ids (``_stretch``), then one more if, at the density it found,
    the rest of the page is within ``STRETCH`` ids."""
    more, after = _stretch(cursor, where, params, sample_set_id, after, limit, span)
    if len(more) >= limit or after is None or not more:
        return more, after
    span = (limit - len(more)) * span * 3 // 2 // len(more)
    if span > STRETCH:
        return more, after
    rest, after = _stretch(cursor, where, params, sample_set_id, after, limit - len(more), span)
    return more + rest, after


def _stretch(
    cursor: CursorWrapper,
    where: list[str],
    params: list[int | str],
    sample_set_id: int | None,
    after: int | None,
    limit: int,
    span: int,
) -> tuple[list[int], int | None]:
    """Matches among the ``span`` ids after ``after`` from the GIN index ANDed with the primary
    key's range, and the last id of that range (None when it reached the scope's last id, or
    found a page)."""
    # The scope's ends along an index in its order: with ``sample_set_id = %s`` and min(id)
    # the planner walks the primary key through every set before this one (as in ``_walk``).
    if sample_set_id is None:
        scope, scope_params, order = "", [], ("id", "id DESC")
    else:
        scope = " WHERE sample_set_id >= %s AND sample_set_id < %s"
        scope_params = [sample_set_id, sample_set_id + 1]
        order = ("sample_set_id, id", "sample_set_id DESC, id DESC")
    _allow(cursor, "indexscan", "indexonlyscan")
    cursor.execute(
        f"SELECT (SELECT id FROM labeling_item{scope} ORDER BY {order[0]} LIMIT 1), "
        f"(SELECT id FROM labeling_item{scope} ORDER BY {order[1]} LIMIT 1)",
        scope_params * 2,
    )
    first, last = cursor.fetchone() or (None, None)
    if first is None or last is None:
        return [], None
    low = after if after is not None else first - 1
    high = low + span
    _allow(cursor, "bitmapscan")
    cursor.execute(
        f"SELECT id FROM labeling_item WHERE {' AND '.join(where)} AND id > %s AND id <= %s "
        "ORDER BY id LIMIT %s",
        [*params, low, high, limit],
    )
    ids = [row[0] for row in cursor.fetchall()]
    return ids, (None if len(ids) >= limit or high >= last else high)


def _walk(
    cursor: CursorWrapper,
    tsquery: int | str,
    sample_set_id: int | None,
    after: int | None,
    limit: int,
    budget: int,
) -> tuple[list[int], int | None]:
    """Matches among the next ``budget`` ids after ``after``, and the last id walked (None when
    the walk reached the end, or found a page).

    Within a set the walk is a range of ``item_set_id_order`` written as row comparisons: with
    ``sample_set_id = %s`` the planner takes the order by id for one the primary key gives
    too, and walks the primary key through every set before this one."""
    if sample_set_id is None:
        scope, scope_params, order = "id > %s", [after or 0], "id"
    else:
        scope = "(sample_set_id, id) > (%s, %s) AND sample_set_id < %s"
        scope_params, order = [sample_set_id, after or 0, sample_set_id + 1], "sample_set_id, id"
    _allow(cursor, "indexscan", "indexonlyscan")
    cursor.execute(
        "SELECT id FROM (SELECT id, sample_set_id, search_vector FROM labeling_item "
        f"WHERE {scope} ORDER BY {order} LIMIT %s) walked "
        "WHERE search_vector @@ to_tsquery('simple', %s) ORDER BY " + order + " LIMIT %s",
        [*scope_params, budget, tsquery, limit],
    )
    ids = [row[0] for row in cursor.fetchall()]
    if len(ids) >= limit:
        return ids, None
    cursor.execute(
        f"SELECT id FROM labeling_item WHERE {scope} ORDER BY {order} OFFSET %s LIMIT 1",
        [*scope_params, budget - 1],
    )
    row = cursor.fetchone()
    return ids, (row[0] if row else None)


def _rows(cursor: CursorWrapper) -> float:
    cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'labeling_item'::regclass")
    row = cursor.fetchone()
    return max(float(row[0]), 0.0) if row else 0.0


def _share(cursor: CursorWrapper, query: Query) -> float | None:
    """The share of items the query matches, from ANALYZE's most common lexemes of
    ``search_vector`` (a word not among them is rarer than all of them: 0 here), assuming
    words independent; None before the table has statistics."""
    cursor.execute(
        "SELECT e.lexeme, e.freq FROM pg_stats s CROSS JOIN LATERAL "
        "unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(lexeme, freq) "
        "WHERE s.schemaname = current_schema() AND s.tablename = 'labeling_item' "
        "AND s.attname = 'search_vector' AND (e.lexeme = ANY(%s) OR e.lexeme LIKE ANY(%s) "
        "OR e.lexeme IS NULL)",
        [query.words, [t.words[-1] + "%" for t in query.terms if t.prefix]],
    )
    rows = cursor.fetchall()
    if not rows:
        return None
    freqs = {lexeme: freq for lexeme, freq in rows if lexeme is not None}
    share = 1.0
    for term in query.terms:
        for i, word in enumerate(term.words):
            if term.prefix and i == len(term.words) - 1:
                listed = sum(f for w, f in freqs.items() if w.startswith(word))
                share *= min(1.0, max(PREFIX_SHARE, listed))
            else:
                share *= freqs.get(word, 0.0)
    return share


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
