"""The preview of an upload: its columns and first rows, what the reader decided (the
separator), the damage it sees, and guesses for the text, id and label columns; or, when its
columns are those of a published test pack (``packs``), the pack's columns and rules.

It reads at most ``HEAD_BYTES`` of a text file (or the first rows of a Parquet file), so it
costs the same for 1 kB and 200 MB, and refuses what cannot be imported.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from labeling.samples import text_reader
from labeling.samples.csv_reader import (
    csv_header,
    csv_rows,
    default_delimiter,
    delimiter_word,
    sniff_delimiter,
    swallowed,
)
from labeling.samples.errors import ImportFileError
from labeling.samples.jsonl_reader import jsonl_rows
from labeling.samples.packs import Pack, recognise_pack
from labeling.samples.uploads import StoredUpload
from labeling.samples.values import as_text, parse_label

PREVIEW_ROWS = 20
_TEXT_NAMES = ("text", "content", "body", "message", "comment", "post")
_ID_NAMES = ("id", "external_id", "item_id", "uid", "uuid", "key")
# Names of a tag column (a category to break figures down by), best first.
_TAG_NAMES = ("tag", "tags", "functionality", "category")
# Names of a gold (expected label) column in common evaluation files, best first; compared
# case-insensitively, with spaces and hyphens read as underscores ("Ground Truth").
GOLD_NAMES = (
    "expected_label",
    "expected",
    "gold_label",
    "gold",
    "ground_truth",
    "groundtruth",
    "gt",
    "true_label",
    "y_true",
    "label",
    "is_violating",
    "violating",
    "violates",
    "is_violation",
    "violation",
    "policy_violation",
    "is_harmful",
    "harmful",
    "is_toxic",
    "toxic",
    "is_unsafe",
    "unsafe",
    "target",
    "y",
)
_JSON_EXAMPLE = 'must be one JSON object, e.g. {"id": "a1", "text": "…"}.'


@dataclass
class Preview:
    format: str
    columns: list[str]
    rows: list[dict[str, Any]]  # the first rows as read; as shown once ``preview_upload`` ends
    text_column: str = ""
    id_column: str = ""
    label_column: str = ""
    label_reason: str = ""  # why the label column was chosen ("recognised by name")
    tag_column: str = ""
    pack: Pack | None = None  # the test pack recognised from the columns
    notes: list[str] = field(default_factory=list)  # what the reader decided (separator)
    warnings: list[str] = field(default_factory=list)  # damage seen in the rows read
    delimiter: str = ""  # CSV/TSV: the separator used
    whole_file: bool = True  # False: only the first HEAD_BYTES were read

    @property
    def delimiter_word(self) -> str:
        return delimiter_word(self.delimiter) if self.delimiter else ""


def preview_upload(upload: StoredUpload, *, delimiter: str | None = None) -> Preview:
    """Columns and the first rows, with guesses for the text, id and label columns.

    Reads at most ``HEAD_BYTES`` of a text file; ``delimiter`` (CSV/TSV) overrides the
    sniffed separator. Raises ``ImportFileError`` for what cannot be imported."""
    if upload.size == 0:
        raise ImportFileError("The file is empty. Choose a file with a header row and data.")
    fmt = upload.format
    if fmt == "parquet":
        preview = _preview_parquet(upload)
    elif fmt == "lines":
        preview = _preview_lines(upload)
    elif fmt == "jsonl":
        preview = _preview_jsonl(upload)
    elif fmt in ("csv", "tsv"):
        preview = _preview_csv(upload, delimiter)
    else:
        raise ImportFileError(f"Unknown format {fmt!r}.")
    columns, rows = preview.columns, preview.rows
    preview.pack = recognise_pack(columns)
    if preview.pack is not None:
        _use_pack(preview, preview.pack)
    else:
        preview.id_column = _guess(columns, _ID_NAMES)
        _guess_gold(preview)
        exclude = {preview.id_column, preview.label_column}
        preview.text_column = _guess(columns, _TEXT_NAMES) or _longest(columns, rows, exclude)
        taken = {preview.text_column, preview.id_column, preview.label_column}
        tag = _guess(columns, _TAG_NAMES)
        preview.tag_column = "" if tag in taken else tag
    preview.rows = [{c: _shown(r.get(c)) for c in columns} for r in rows]
    return preview


def _use_pack(preview: Preview, pack: Pack) -> None:
    """The pack's columns; its label is read by its own rule (``hateful``, ``unsafe``, the
    moderation categories), which the gold guess by name would call "not a label"."""
    preview.text_column = pack.text_column
    preview.id_column = pack.id_column
    preview.label_column = pack.label_column
    preview.label_reason = f"read by the {pack.name} rule above"
    preview.tag_column = pack.tag_column


# Column guesses ------------------------------------------------------------------------------


def _folded(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _guess(columns: list[str], names: tuple[str, ...]) -> str:
    lowered: dict[str, str] = {}
    for c in columns:
        lowered.setdefault(_folded(c), c)
    for name in names:
        if name in lowered:
            return lowered[name]
    return ""


def _guess_gold(preview: Preview) -> None:
    """The first column named like gold whose values in the rows read are labels (0/1,
    true/false, yes/no, as the import reads them); a name match with other values (``label``
    holding "spam") is passed over, and the preview says so."""
    skipped: dict[str, Any] = {}  # column: a value that is not a label
    for name in GOLD_NAMES:
        column = _guess(preview.columns, (name,))
        if not column or column == preview.id_column or column in skipped:
            continue
        bad = [v for v in (r.get(column) for r in preview.rows) if not parse_label(v)[1]]
        if len(bad) * 2 > len(preview.rows):
            skipped[column] = bad[0]
            continue
        preview.label_column = column
        preview.label_reason = "recognised by name"
        break
    for column, value in skipped.items():
        example = _shown(value)[:40]
        preview.notes.append(
            f"The column “{column}” is named like a gold column, but its values (such as "
            f"“{example}”) are not 0/1, true/false or yes/no, so it is not used as gold. "
            "Choose it below if it is the gold column."
        )


def _longest(columns: list[str], rows: list[dict[str, Any]], exclude: set[str]) -> str:
    """The column with the longest values on average: likely the text."""
    best, best_len = "", -1.0
    for col in columns:
        if col in exclude:
            continue
        values = [r.get(col) for r in rows]
        avg = sum(len(as_text(v)) for v in values) / max(len(values), 1)
        if avg > best_len:
            best, best_len = col, avg
    return best


def _shown(value: Any) -> str:
    text = as_text(value)
    return text if len(text) <= 300 else text[:300] + "…"


def _head_mb() -> int:
    return text_reader.HEAD_BYTES // 1024 // 1024


# CSV and TSV -------------------------------------------------------------------------------


@dataclass
class _CsvScan:
    """What the preview saw in the rows of a CSV head."""

    header: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    swallowed: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    nul: list[int] = field(default_factory=list)


def _preview_csv(upload: StoredUpload, delimiter: str | None) -> Preview:
    head, whole = text_reader.read_head(upload.path)
    if not head.strip():
        if whole:
            raise ImportFileError("The file is empty. Choose a file with a header row.")
        raise ImportFileError(
            f"The first line is longer than {_head_mb()} MB. A CSV file needs "
            "a header row and one row per item; check that this is one."
        )
    used = delimiter or sniff_delimiter(head, upload.format)
    default = default_delimiter(upload.format)
    preview = Preview(upload.format, [], [], delimiter=used, whole_file=whole)
    if not delimiter and used != default:
        preview.notes.append(
            f"This file is separated by {delimiter_word(used)}s, not "
            f"{delimiter_word(default)}s: it is read that way. Choose another separator "
            "below if that is wrong."
        )
    scan = _scan_csv_head(head, used, whole)
    if not scan.header or not any(scan.header):
        raise ImportFileError("The file is empty. Choose a file with a header row.")
    if not scan.rows:
        raise ImportFileError("The file has a header row but no data rows.")
    preview.warnings.extend(_csv_warnings(scan, delimiter_word(used)))
    if not whole:
        preview.notes.append(
            f"The preview read the first {_head_mb()} MB ({scan.count:,} rows); "
            "the import checks the whole file and stops with the line number if it finds "
            "damage further on."
        )
    preview.columns = scan.header
    preview.rows = scan.rows
    return preview


def _scan_csv_head(head: str, delimiter: str, whole: bool) -> _CsvScan:
    scan = _CsvScan()
    try:
        for row in csv_rows(iter(io.StringIO(head, newline="")), delimiter, whole=whole):
            if row.number == 0:
                scan.header, changed = csv_header(row.cells)
                if changed:
                    scan.nul.append(0)
                continue
            scan.count += 1
            _scan_csv_row(scan, row.number, row.cells, delimiter)
    except ImportFileError:
        # The head ends inside a quoted field: the rows before it are the preview; the
        # import reads the whole file strictly and fails there if the field never closes.
        if whole or scan.count == 0:
            raise
    return scan


def _scan_csv_row(scan: _CsvScan, number: int, cells: list[str], delimiter: str) -> None:
    width = len(scan.header)
    if len(scan.rows) < PREVIEW_ROWS:
        scan.rows.append(dict(zip(scan.header, cells, strict=False)))
    if any("\x00" in c for c in cells):
        scan.nul.append(number)
    if swallowed(cells, delimiter, width):
        scan.swallowed.append(number)
    trimmed = list(cells)
    while len(trimmed) > width and not trimmed[-1].strip():
        trimmed.pop()
    if len(trimmed) > width:
        scan.extra.append(number)
    elif len(cells) < width and any(c.strip() for c in cells):
        scan.missing.append(number)


def _rows_list(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return shown + (f" and {len(rows) - 10:,} more" if len(rows) > 10 else "")


def _csv_warnings(scan: _CsvScan, word: str) -> list[str]:
    warnings = []
    if scan.swallowed:
        warnings.append(
            f"Row{'s' if len(scan.swallowed) > 1 else ''} {_rows_list(scan.swallowed)} hold "
            f"line breaks followed by lines that look like rows of their own (as many {word}s "
            "as the header): a quote is probably missing, and those rows would become one "
            "item. Check the quotes there before importing."
        )
    if scan.extra:
        warnings.append(
            f"Row{'s' if len(scan.extra) > 1 else ''} {_rows_list(scan.extra)} have more "
            f"cells than the header: the extra cells are kept in the metadata. If the text "
            f"holds {word}s, it must be quoted; or choose another separator."
        )
    if scan.missing:
        warnings.append(
            f"Row{'s' if len(scan.missing) > 1 else ''} {_rows_list(scan.missing)} have fewer "
            "cells than the header; the missing ones are read as empty."
        )
    if scan.nul:
        warnings.append(
            "The file contains NUL characters (they cannot be stored): they are replaced by "
            "� and the rows are listed in the report."
        )
    return warnings


# JSON Lines, pasted lines, Parquet -----------------------------------------------------------


def _preview_jsonl(upload: StoredUpload) -> Preview:
    head, whole = text_reader.read_head(upload.path)
    columns: list[str] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    nul = False
    for number, obj, changed in jsonl_rows(io.StringIO(head, newline="")):
        nul = nul or changed
        if obj is None:
            continue
        for key in obj:
            if key not in seen:
                seen.add(key)
                columns.append(key)
        if len(rows) < PREVIEW_ROWS:
            rows.append(obj)
        if number >= 1000:
            break
    if not rows:
        if not whole:
            raise ImportFileError(
                f"The first line is longer than {_head_mb()} MB. Each line of "
                "a JSON Lines file " + _JSON_EXAMPLE
            )
        raise ImportFileError("The file has no JSON lines.")
    if not columns:
        raise ImportFileError("The JSON lines hold no fields (only {}): each line " + _JSON_EXAMPLE)
    preview = Preview(upload.format, columns, rows, whole_file=whole)
    if nul:
        preview.warnings.append(
            "The file contains NUL characters or unpaired surrogates (they cannot be stored): "
            "they are replaced by � and the rows are listed in the report."
        )
    return preview


def _preview_lines(upload: StoredUpload) -> Preview:
    head, whole = text_reader.read_head(upload.path)
    rows: list[dict[str, Any]] = []
    for line in io.StringIO(head, newline=""):
        if line.strip():
            rows.append({"text": line.rstrip("\r\n")})
        if len(rows) >= PREVIEW_ROWS:
            break
    if not rows:
        raise ImportFileError("There is no text: paste one item per line.")
    preview = Preview(upload.format, ["text"], rows, whole_file=whole)
    if "\x00" in head:
        preview.warnings.append("The text contains NUL characters; they are replaced by �.")
    return preview


def _preview_parquet(upload: StoredUpload) -> Preview:
    # Imported here, not at the top: pyarrow costs every web process about 65 MB and 0.35 s at
    # start, and only a Parquet upload needs it.
    from labeling.samples.parquet_reader import open_parquet, parquet_columns, parquet_slices

    pf = open_parquet(upload.path)
    if pf.metadata.num_rows == 0:
        raise ImportFileError("The Parquet file has no rows.")
    columns = parquet_columns(pf)
    rows: list[dict[str, Any]] = []
    for data in parquet_slices(pf, limit_rows=PREVIEW_ROWS):
        n = len(next(iter(data.values()))) if data else 0
        rows.extend({c: data[c][j] for c in columns} for j in range(n))
        if len(rows) >= PREVIEW_ROWS:
            break
    return Preview(upload.format, columns, rows[:PREVIEW_ROWS])
