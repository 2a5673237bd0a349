"""Names for the few job statements written by hand, taken from the models.

Four statements in this package are SQL rather than ORM because the ORM costs more than the
statement on a job's hot path: the chunk window (``dispatch``), the label upsert on PostgreSQL
(``results``), the statistics pivot (``stats``) and ``ANALYZE`` (``stats``). None of them spells
a table or column name: ``names`` reads them from the model's ``_meta`` and quotes them for the
database, so a renamed field or table changes the statement with it (and a removed one fails at
once with ``FieldDoesNotExist``, not as a wrong statement).
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Field, Model


def table(model: type[Model]) -> str:
    """The model's table name, quoted for this database."""
    return str(connection.ops.quote_name(model._meta.db_table))


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    found = model._meta.get_field(name)
    # A reverse relation or a many-to-many has no column of this table.
    if not isinstance(found, Field) or found.column is None:
        raise TypeError(f"{model.__name__}.{name} is not a column of {model._meta.db_table}")
    return found


def column(model: type[Model], field: str) -> str:
    """The column of ``model.field`` (``job`` gives ``job_id``), quoted for this database."""
    return str(connection.ops.quote_name(str(_field(model, field).column)))


def db_type(model: type[Model], field: str) -> str:
    """The column type of ``model.field`` on this database (a foreign key: its target's)."""
    return str(_field(model, field).db_type(connection))


def names(model: type[Model], *fields: str) -> dict[str, str]:
    """``{"table": …, field: column, …}`` for ``str.format`` on a statement's text."""
    return {"table": table(model), **{field: column(model, field) for field in fields}}


def update_returning() -> bool:
    """Whether the database runs ``UPDATE … RETURNING``: PostgreSQL, and SQLite from 3.35 (the
    version Django's own flag for ``INSERT … RETURNING`` asks for)."""
    return bool(connection.features.can_return_columns_from_insert)
