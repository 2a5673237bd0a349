"""Two ORM expressions for statements the plain ORM spells in a way that costs: a long id list,
and a text's first characters looked up through an expression index."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Func, Lookup, TextField
from django.db.models.lookups import In
from django.db.models.sql.compiler import SQLCompiler

if TYPE_CHECKING:
    from django.db.models.sql.compiler import _AsSqlType


class AnyOf(Lookup[Any]):
    """``column = ANY(%s)``: the values as one array parameter on PostgreSQL, ``IN (…)`` elsewhere.

    An ``IN`` list is one placeholder per value: the ORM builds (and PostgreSQL parses) a longer
    statement for every id, which for a few hundred ids costs more than running it. The array is
    cast to the column's type, so the column's index serves the comparison. As a condition, it
    also keeps a filter out of the planner's equivalence classes: ``policy_id = ANY(…)`` with
    ``ORDER BY policy_id, id`` reads a (policy, id) index in order, where ``policy_id = 6`` with
    ``ORDER BY id`` would not.
    """

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> _AsSqlType:
        if connection.vendor != "postgresql":
            return compiler.compile(In(self.lhs, list(self.rhs)))
        lhs, params = self.process_lhs(compiler, connection)
        cast = self.lhs.output_field.cast_db_type(connection)
        array: tuple[Any, ...] = (*params, list(self.rhs))  # a list: one array parameter
        return f"{lhs} = ANY(%s::{cast}[])", array


def any_of(field: str, values: Iterable[Any]) -> AnyOf:
    """``filter(any_of("item_id", ids))``: the rows whose ``field`` is one of ``values``."""
    return AnyOf(F(field), list(values))


class TextPrefix(Func):
    """The first ``length`` characters of a text, spelled as ``Substr(field, 1, length)`` is in an
    index definition: with both numbers written into the statement.

    ``Substr`` sends them as bound parameters, and SQLite uses an expression index only for the
    very expression it was built on, constants included: a lookup through ``Substr`` misses the
    index and reads the whole table. Only whole numbers are accepted (they become SQL text).
    """

    function = "SUBSTRING"
    template = "%(function)s(%(expressions)s, 1, %(length)d)"
    output_field = TextField()

    def __init__(self, expression: str, length: int) -> None:
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, not {length!r}")
        super().__init__(expression, length=length)

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> _AsSqlType:
        return self.as_sql(compiler, connection, function="SUBSTR", **extra_context)
