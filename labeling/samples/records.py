"""Every row of an upload as a ``Record`` (row number, text, id, label, metadata, findings, tag),
whatever its format; the columns not chosen become metadata and every string is clean of the
characters PostgreSQL cannot store. Damage raises ``ImportFileError`` with its line.

Row numbers count data rows from 1 (a CSV header is not a row); for JSON Lines and pasted text
they are line numbers.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from labeling.samples.csv_reader import csv_header, csv_rows, sniff_delimiter, swallowed
from labeling.samples.errors import ImportFileError, missing_column
from labeling.samples.jsonl_reader import jsonl_rows
from labeling.samples.text_reader import (
    ByteCounter,
    bounded_lines,
    check_utf8,
    open_counted,
    read_head,
)
from labeling.samples.uploads import StoredUpload
from labeling.samples.values import (
    MAX_JSON_DEPTH,
    REPLACEMENT,
    TooDeep,
    clean_json,
    clean_str,
    json_safe,
)

# Metadata key for a CSV row's cells beyond the header (they have no column name).
EXTRA_CELLS_KEY = "_extra_cells"
_NUL = ("nul",)


class Record(NamedTuple):
    row: int
    text: Any  # as read: a Parquet cell may be a number, a JSON value anything
    id: Any
    label: Any
    metadata: dict[str, Any]
    findings: tuple[str, ...]  # "nul", "swallowed", "missing_cells"
    tag: Any = None  # the tag column's cell, or what a test pack derives (``packs``)


@dataclass
class Progress:
    """How far the reading is: bytes of a text file, rows of a Parquet file."""

    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class Columns:
    """The columns chosen for the text, id, label and tag; "" for none."""

    text: str
    id: str = ""
    label: str = ""
    tag: str = ""

    @property
    def chosen(self) -> list[str]:
        return [c for c in (self.text, self.id, self.label, self.tag) if c]


def iter_records(
    upload: StoredUpload,
    columns: Columns,
    *,
    delimiter: str | None = None,
    progress: Progress | None = None,
) -> Iterator[Record]:
    """Every row of ``upload``; ``delimiter`` (CSV/TSV) None sniffs the separator.

    Raises ``ImportFileError`` at damage."""
    progress = progress or Progress()
    fmt = upload.format
    if fmt == "parquet":
        yield from _parquet_records(upload, columns, progress)
        return
    if fmt not in ("lines", "csv", "tsv", "jsonl"):
        raise ImportFileError(f"Unknown format {fmt!r}.")
    check_utf8(upload.path)
    progress.total = upload.size
    fh, counter = open_counted(upload.path)
    with fh:
        if fmt == "lines":
            yield from _line_records(fh, counter, progress)
        elif fmt == "jsonl":
            yield from _jsonl_records(fh, counter, columns, progress)
        else:
            if delimiter is None:
                delimiter = sniff_delimiter(read_head(upload.path)[0], fmt)
            yield from _csv_records(fh, counter, columns, delimiter, progress)
    progress.done = progress.total


def _line_records(
    fh: io.TextIOWrapper, counter: ByteCounter, progress: Progress
) -> Iterator[Record]:
    for number, line in enumerate(bounded_lines(fh), start=1):
        text, changed = clean_str(line.rstrip("\r\n"))
        if number % 1000 == 0:
            progress.done = counter.count
        yield Record(number, text, None, None, {}, _NUL if changed else ())


def _jsonl_records(
    fh: io.TextIOWrapper, counter: ByteCounter, columns: Columns, progress: Progress
) -> Iterator[Record]:
    chosen = columns.chosen
    first = True
    for number, obj, changed in jsonl_rows(bounded_lines(fh)):
        if number % 1000 == 0:
            progress.done = counter.count
        if obj is None:
            yield Record(number, None, None, None, {}, ())
            continue
        if first:
            first = False
            if columns.text not in obj:
                # Only the first object is checked: later ones may leave out keys.
                raise missing_column(columns.text, list(obj))
        yield Record(
            number,
            obj.get(columns.text),
            obj.get(columns.id) if columns.id else None,
            obj.get(columns.label) if columns.label else None,
            {k: json_safe(v) for k, v in obj.items() if k not in chosen},
            _NUL if changed else (),
            obj.get(columns.tag) if columns.tag else None,
        )


@dataclass(frozen=True)
class _CsvLayout:
    """Where the chosen columns are in a CSV header."""

    width: int
    text: int
    id: int  # -1: no id column
    label: int  # -1: no label column
    tag: int  # -1: no tag column
    metadata: list[tuple[int, str]]  # the other named columns


def _csv_layout(header: list[str], columns: Columns) -> _CsvLayout:
    chosen = columns.chosen
    for name in chosen:
        if name not in header:
            raise missing_column(name, header)
    return _CsvLayout(
        width=len(header),
        text=header.index(columns.text),
        id=header.index(columns.id) if columns.id else -1,
        label=header.index(columns.label) if columns.label else -1,
        tag=header.index(columns.tag) if columns.tag else -1,
        metadata=[(i, h) for i, h in enumerate(header) if h and h not in chosen],
    )


def _csv_records(
    fh: io.TextIOWrapper,
    counter: ByteCounter,
    columns: Columns,
    delimiter: str,
    progress: Progress,
) -> Iterator[Record]:
    # A CSV line is bounded by the field limit; no need for ``bounded_lines``' check per line.
    rows = csv_rows(iter(fh), delimiter)
    first = next(rows, None)
    if first is None:
        raise ImportFileError("The file is empty.")
    header, header_nul = csv_header(first.cells)
    layout = _csv_layout(header, columns)
    for row in rows:
        if row.number % 1000 == 0:
            progress.done = counter.count
        record = _csv_record(row.number, row.cells, layout, delimiter)
        if header_nul:  # reported once, on the first row
            record = record._replace(findings=("nul", *record.findings))
            header_nul = False
        yield record


def _csv_record(number: int, cells: list[str], layout: _CsvLayout, delimiter: str) -> Record:
    findings: list[str] = []
    joined = "".join(cells)  # one scan of the row for the rare cases below
    if "\x00" in joined:
        cells = [c.replace("\x00", REPLACEMENT) for c in cells]
        findings.append("nul")
    if ("\n" in joined or "\r" in joined) and swallowed(cells, delimiter, layout.width):
        findings.append("swallowed")
    if len(cells) < layout.width:
        if any(c.strip() for c in cells):
            findings.append("missing_cells")
        cells = cells + [""] * (layout.width - len(cells))
    meta: dict[str, Any] = {h: cells[i] for i, h in layout.metadata if cells[i] != ""}
    extra = cells[layout.width :]
    while extra and extra[-1].strip() == "":
        extra.pop()  # trailing empty cells ("a,b,,") are common and hold nothing
    if extra:
        meta[EXTRA_CELLS_KEY] = extra
    return Record(
        number,
        cells[layout.text],
        cells[layout.id] if layout.id >= 0 else None,
        cells[layout.label] if layout.label >= 0 else None,
        meta,
        tuple(findings),
        cells[layout.tag] if layout.tag >= 0 else None,
    )


def _parquet_records(
    upload: StoredUpload, columns: Columns, progress: Progress
) -> Iterator[Record]:
    # Imported here, not at the top: pyarrow costs every web and worker process about 65 MB
    # and 0.35 s at start, and only a Parquet upload needs it.
    from labeling.samples.parquet_reader import (
        check_decoded_size,
        open_parquet,
        parquet_columns,
        parquet_slices,
    )

    pf = open_parquet(upload.path)
    names = parquet_columns(pf)
    chosen = columns.chosen
    for name in chosen:
        if name not in names:
            raise missing_column(name, names)
    check_decoded_size(pf)
    progress.total = pf.metadata.num_rows
    number = 0
    for data in parquet_slices(pf):
        texts = data[columns.text]
        ids = data[columns.id] if columns.id else None
        labels = data[columns.label] if columns.label else None
        tags = data[columns.tag] if columns.tag else None
        meta_columns = [(name, data[name]) for name in names if name not in chosen]
        for j, raw in enumerate(texts):
            number += 1
            text, text_changed = _clean_if_str(raw)
            item_id, id_changed = _clean_if_str(ids[j] if ids is not None else None)
            label, label_changed = _clean_if_str(labels[j] if labels is not None else None)
            tag = tags[j] if tags is not None else None  # cleaned with the other tags
            meta, meta_changed = _parquet_metadata(meta_columns, j)
            changed = text_changed or id_changed or label_changed or meta_changed
            yield Record(number, text, item_id, label, meta, _NUL if changed else (), tag)
        progress.done = number


def _clean_if_str(value: Any) -> tuple[Any, bool]:
    return clean_str(value) if isinstance(value, str) else (value, False)


def _parquet_metadata(
    meta_columns: list[tuple[str, list[Any]]], j: int
) -> tuple[dict[str, Any], bool]:
    meta: dict[str, Any] = {}
    changed = False
    for name, values in meta_columns:
        if values[j] is None:
            continue
        try:
            meta[name], value_changed = clean_json(json_safe(values[j]))
        except TooDeep:
            raise ImportFileError(
                f"Column {name!r} nests values more than {MAX_JSON_DEPTH} levels deep."
            ) from None
        changed = changed or value_changed
    return meta, changed
