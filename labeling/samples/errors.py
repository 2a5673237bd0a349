"""The one error an import raises for a person: what is wrong with the file and what to do.

Refused, with the line where it applies: a file that is not UTF-8; CSV damage (a quoted field
that never closes, a stray quote after a closing quote, a field over ``MAX_FIELD_CHARS``); JSON
nested deeper than ``MAX_JSON_DEPTH`` or a line over ``MAX_LINE_CHARS``; a Parquet file over
``PARQUET_MAX_ROWS`` rows or one that decodes to more than the upload limit; a chosen column
the file lacks; a file with nothing to import.
"""

from __future__ import annotations


class ImportFileError(ValueError):
    """A file that cannot be imported; the message says what is wrong and what to do."""


def missing_column(name: str, columns: list[str]) -> ImportFileError:
    listed = ", ".join(repr(c) for c in columns[:50]) or "none"
    return ImportFileError(f"Column {name!r} is not in the file. Available columns: {listed}.")
