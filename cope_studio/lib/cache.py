"""The embedded default's shared cache: Django's database cache, with an ``incr`` that loses no
count when several web processes add to one key at once.

Every gunicorn process sees the same table, so the API rate limit (``labeling.api.keys``) counts
a key's requests once for all of them. Django's ``DatabaseCache.incr`` reads the value and writes
it back as two statements (``BaseCache.incr``): two processes that read the same count would both
write count + 1. Here the read and the write are one transaction that holds the row: PostgreSQL
locks it (``SELECT ... FOR UPDATE``); SQLite's transactions are IMMEDIATE in these settings, so a
second writer waits for the first to commit. The statements follow Django's own backend (the
table is not a model, so there is no ORM to ask).
"""

from __future__ import annotations

import base64
import pickle
from typing import Any

from django.core.cache.backends.db import DatabaseCache
from django.db import connections, models, router, transaction
from django.utils.timezone import now

# The table every web process shares; created by labeling's migration 0008 (whatever the cache
# settings say, so switching COPE_CACHE_URL off later finds it).
TABLE = "cope_cache"


class SharedDatabaseCache(DatabaseCache):
    def __init__(self, table: str, params: dict[str, Any]) -> None:
        super().__init__(table, params)
        self.table = table

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        cache_key = self.make_and_validate_key(key, version=version)
        alias = router.db_for_write(self.cache_model_class)
        connection = connections[alias]
        quote = connection.ops.quote_name
        table = quote(self.table)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {quote('value')}, {quote('expires')} FROM {table} "
                f"WHERE {quote('cache_key')} = %s{lock}",
                [cache_key],
            )
            row = cursor.fetchone()
            if row is None or _as_datetime(row[1], alias) < now():
                raise ValueError(f"Key '{key}' not found")
            stored = connection.ops.process_clob(row[0])
            value = pickle.loads(base64.b64decode(stored.encode())) + delta
            encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
            cursor.execute(
                f"UPDATE {table} SET {quote('value')} = %s WHERE {quote('cache_key')} = %s",
                [encoded, cache_key],
            )
        return int(value)


def _as_datetime(raw: Any, alias: str) -> Any:
    """The ``expires`` column as an aware or naive datetime, as Django's own backend reads it."""
    connection = connections[alias]
    expression = models.Expression(output_field=models.DateTimeField())
    for converter in connection.ops.get_db_converters(expression) + list(
        expression.get_db_converters(connection)
    ):
        raw = converter(raw, expression, connection)
    return raw
