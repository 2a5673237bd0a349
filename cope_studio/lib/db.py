"""Helpers for the few statements written by hand (hot paths where building the query through
the ORM took longer than running it)."""

from __future__ import annotations

from typing import Any

from django.db import connection


def table(model: Any) -> str:
    """The model's table name, quoted for this database."""
    return str(connection.ops.quote_name(model._meta.db_table))


def marks(values: Any) -> str:
    """``%s, %s, …``: one placeholder per value, for ``IN (…)``."""
    return ", ".join(["%s"] * len(values))


def fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def update_returning() -> bool:
    """Whether the database runs ``UPDATE … RETURNING``: PostgreSQL, and SQLite from 3.35 (the
    version Django's own flag for ``INSERT … RETURNING`` asks for)."""
    return bool(connection.features.can_return_columns_from_insert)
