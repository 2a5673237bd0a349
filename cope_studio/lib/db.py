"""What the database can do, for the few statements written by hand."""

from __future__ import annotations

from django.db import connection


def update_returning() -> bool:
    """Whether the database runs ``UPDATE … RETURNING``: PostgreSQL, and SQLite from 3.35 (the
    version Django's own flag for ``INSERT … RETURNING`` asks for)."""
    return bool(connection.features.can_return_columns_from_insert)
