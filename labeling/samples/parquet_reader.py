"""Reading Parquet in bounded memory: sizes checked from the metadata, then from dictionary
lengths, before any value becomes a Python object; rows handed out as column slices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from pyarrow import RecordBatch
from pyarrow.parquet import FileMetaData, ParquetFile

from labeling.samples import uploads
from labeling.samples.errors import ImportFileError
from labeling.samples.values import MAX_FIELD_CHARS, clean_str

PARQUET_MAX_ROWS = 10_000_000
PARQUET_BATCH_ROWS = 1_000
PARQUET_SLICE_BYTES = 16 * 1024 * 1024  # rows are turned into Python values this much at a time


def _unreadable(exc: Exception) -> ImportFileError:
    return ImportFileError(
        f"This is not a readable Parquet file ({str(exc)[:300]}). Export it again as Parquet, "
        "or upload a CSV or JSON Lines file instead."
    )


def _too_big(size: int) -> ImportFileError:
    return ImportFileError(
        f"The Parquet file holds more than {size / 1024 / 1024:,.0f} MB of data once "
        f"decompressed; the limit is {settings.COPE_MAX_UPLOAD_MB} MB, the same as for any "
        "upload (COPE_MAX_UPLOAD_MB). Split it into smaller files."
    )


def _value_too_big(size: int) -> None:
    if size > MAX_FIELD_CHARS:
        raise ImportFileError(
            f"A value in the Parquet file is {size / 1024 / 1024:,.1f} MB; one item can hold "
            f"at most {MAX_FIELD_CHARS:,} characters."
        )


def open_parquet(path: Path) -> ParquetFile:
    """The file, opened with its text columns kept as dictionaries (a repeated value stays
    one value in memory until rows are turned into Python values), after checking the sizes
    its metadata declares."""
    try:
        pf = ParquetFile(path)
        meta = pf.metadata
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        expanding = _expanding_columns(pf.schema_arrow, meta)
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as exc:
        raise _unreadable(exc) from None
    if meta.num_rows > PARQUET_MAX_ROWS:
        raise ImportFileError(
            f"The Parquet file declares {meta.num_rows:,} rows; at most {PARQUET_MAX_ROWS:,} "
            "can be imported. Split it into smaller files."
        )
    if declared > uploads.max_upload_bytes():
        raise _too_big(declared)
    try:
        return ParquetFile(path, read_dictionary=sorted(expanding)) if expanding else pf
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise _unreadable(exc) from None


def _expanding_columns(schema: Any, meta: FileMetaData) -> set[str]:
    """The text columns to read as dictionaries.

    A text column stored as a dictionary can expand far beyond the sizes the metadata
    declares (one long value, repeated by index). Under 4 bytes per value a chunk must repeat
    values (a plain value alone takes a 4-byte length): such columns are read as dictionaries
    and measured from the dictionary's value lengths before any row is decoded. Reading every
    dictionary column that way would hash each unique value (+3 s per million rows), so
    columns of mostly distinct values are read plainly.
    """
    texts = {
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_binary(f.type)
        or pa.types.is_large_binary(f.type)
    }
    expanding: set[str] = set()
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.num_columns != meta.num_columns:
            # pyarrow aborts the process (not an exception) on such a row group's columns.
            raise ValueError("a row group's columns do not match the schema")
        for j in range(group.num_columns):
            chunk = group.column(j)
            if chunk.path_in_schema in texts and chunk.has_dictionary_page:
                if chunk.total_uncompressed_size / max(chunk.num_values, 1) < 4:
                    expanding.add(chunk.path_in_schema)
    return expanding


def parquet_columns(pf: ParquetFile) -> list[str]:
    return [clean_str(str(name))[0] for name in pf.schema_arrow.names]


def check_decoded_size(pf: ParquetFile) -> None:
    """Measure what the dictionary columns decode to, from their value lengths taken by
    index, without making a single Python string: a file that expands past the upload limit
    is refused before anything is written."""
    texts = [f.name for f in pf.schema_arrow if pa.types.is_dictionary(f.type)]
    if not texts:
        return
    limit = uploads.max_upload_bytes()
    total = 0
    try:
        for batch in pf.iter_batches(
            batch_size=PARQUET_BATCH_ROWS * 64, columns=texts, use_threads=False
        ):
            for column in batch.columns:
                lengths = pc.binary_length(column.dictionary).cast(pa.int64())
                total += pc.sum(pc.take(lengths, column.indices)).as_py() or 0
            if total > limit:
                raise _too_big(total)
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as exc:
        raise _unreadable(exc) from None


def parquet_slices(
    pf: ParquetFile, *, limit_rows: int | None = None
) -> Iterator[dict[str, list[Any]]]:
    """Rows as ``{column: values}`` slices of at most ``PARQUET_SLICE_BYTES`` decoded.

    Before any value becomes a Python object, the decoded size of each batch is measured
    from the dictionary (value lengths taken by index): a file that expands past the upload
    limit, or holds a value over ``MAX_FIELD_CHARS``, is refused then, in bounded memory.
    """
    limit = uploads.max_upload_bytes()
    total = seen = 0
    names = parquet_columns(pf)
    try:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, use_threads=False):
            row_bytes = _row_bytes(batch)
            total += sum(row_bytes)
            if total > limit:
                raise _too_big(total)
            for start, stop in _slice_bounds(row_bytes):
                piece = batch.slice(start, stop - start)
                yield {name: piece.column(i).to_pylist() for i, name in enumerate(names)}
                seen += stop - start
                if limit_rows is not None and seen >= limit_rows:
                    return
    except ImportFileError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as exc:
        raise _unreadable(exc) from None


def _row_bytes(batch: RecordBatch) -> list[int]:
    """What each row of the batch decodes to, in bytes, measured without decoding it; a value
    over ``MAX_FIELD_CHARS`` is refused here."""
    n = batch.num_rows
    row_bytes = pa.array([0] * n, pa.int64())
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            lengths = pc.binary_length(column.dictionary).cast(pa.int64())
            sizes = pc.fill_null(pc.take(lengths, column.indices), 0)
        elif pa.types.is_string(column.type) or pa.types.is_binary(column.type):
            sizes = pc.fill_null(pc.binary_length(column).cast(pa.int64()), 0)
        else:
            row_bytes = pc.add(row_bytes, pa.scalar(column.nbytes // max(n, 1) + 1, pa.int64()))
            continue
        _value_too_big(pc.max(sizes).as_py() or 0)
        row_bytes = pc.add(row_bytes, sizes)
    return [int(size) for size in row_bytes.to_pylist()]


def _slice_bounds(row_bytes: list[int]) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive rows of at most ``PARQUET_SLICE_BYTES`` together (a
    single larger row is a slice of its own)."""
    n, start = len(row_bytes), 0
    while start < n:
        stop, size = start + 1, row_bytes[start]
        while stop < n and size + row_bytes[stop] <= PARQUET_SLICE_BYTES:
            size += row_bytes[stop]
            stop += 1
        yield start, stop
        start = stop
