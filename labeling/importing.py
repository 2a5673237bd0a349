"""Sample-set import: CSV / TSV, JSON Lines, Parquet and pasted lines, streamed from disk.

The flow is upload → preview → confirm. An upload is written to ``DATA_DIR/uploads/<token>``
and the token travels between the preview and the confirm step, so the file is parsed twice
(first rows, then everything) but never held whole in memory.

Nothing is dropped silently; the report stored on the sample set says, with row numbers:

* empty rows: skipped (there is nothing to label);
* duplicates (same sha256 of the whitespace-normalised text): imported and reported;
* over-long items (over ``max_chars``): imported and reported; the worker gives them a
  per-item "over budget" error at scoring time, which the job page counts as excluded;
* duplicate external ids: imported under a suffixed id (``abc~2``), old and new id reported;
  rejecting the file would make a 100k-row export unusable for one repeated id;
* expected labels that are not 0/1: the item is imported without one, the row is reported;
* CSV rows with more cells than the header: the extra cells are kept in the item's metadata
  under ``"_extra_cells"`` and the rows are reported.

Row numbers count data rows from 1 (a CSV header is not a row); for JSON Lines and pasted text
they are line numbers.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction

from labeling.models import Item, SampleSet

csv.field_size_limit(2**31 - 1)

DEFAULT_MAX_CHARS = 20_000
PREVIEW_ROWS = 20
BATCH_SIZE = 5_000
REPORT_ROWS = 200  # row numbers listed per finding; the counts are always complete
UPLOAD_TTL_SECONDS = 24 * 3600
EXTERNAL_ID_MAX = 255
# Metadata key for a CSV row's cells beyond the header (they have no column name).
EXTRA_CELLS_KEY = "_extra_cells"

FORMAT_LABELS = {
    "csv": "CSV",
    "tsv": "TSV",
    "jsonl": "JSON Lines",
    "parquet": "Parquet",
    "lines": "pasted lines",
}
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "lines",
}
_TEXT_NAMES = ("text", "content", "body", "message", "comment", "post")
_ID_NAMES = ("id", "external_id", "item_id", "uid", "uuid", "key")
_LABEL_NAMES = ("expected_label", "expected", "label", "gold", "gold_label")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}


class ImportFileError(ValueError):
    """A file that cannot be imported; the message says what is wrong and what to do."""


def format_for_filename(name: str) -> str:
    suffix = Path(name).suffix.lower()
    fmt = _EXTENSIONS.get(suffix)
    if fmt is None:
        shown = suffix or "(no extension)"
        raise ImportFileError(
            f"Files of type {shown} cannot be imported. Upload a .csv, .tsv, .jsonl or "
            ".parquet file, or paste one item per line."
        )
    return fmt


def max_upload_bytes() -> int:
    return int(settings.COPE_MAX_UPLOAD_MB) * 1024 * 1024


def upload_dir() -> Path:
    path = Path(settings.DATA_DIR) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class StoredUpload:
    token: str
    path: Path
    format: str
    original_name: str
    size: int

    @property
    def format_label(self) -> str:
        return FORMAT_LABELS[self.format]


def _remove_stale_uploads(folder: Path) -> None:
    cutoff = time.time() - UPLOAD_TTL_SECONDS
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass


def _new_upload(fmt: str, original_name: str) -> tuple[str, Path]:
    folder = upload_dir()
    _remove_stale_uploads(folder)
    token = secrets.token_hex(16)
    meta = {"format": fmt, "original_name": original_name}
    (folder / f"{token}.json").write_text(json.dumps(meta), encoding="utf-8")
    return token, folder / f"{token}.data"


def store_upload(uploaded: UploadedFile) -> StoredUpload:
    """Copy an uploaded file to the uploads folder; checks its type and size first."""
    name = uploaded.name or "upload"
    fmt = format_for_filename(name)
    limit = max_upload_bytes()
    if uploaded.size is not None and uploaded.size > limit:
        raise ImportFileError(
            f"The file is {uploaded.size / 1024 / 1024:.1f} MB; the limit is "
            f"{settings.COPE_MAX_UPLOAD_MB} MB (COPE_MAX_UPLOAD_MB). Split it, or ask an admin "
            "to raise the limit."
        )
    token, path = _new_upload(fmt, name)
    size = 0
    with path.open("wb") as out:
        for chunk in uploaded.chunks():
            size += len(chunk)
            out.write(chunk)
    return StoredUpload(token, path, fmt, name, size)


def store_pasted(text: str) -> StoredUpload:
    token, path = _new_upload("lines", "pasted text")
    data = text.encode("utf-8")
    path.write_bytes(data)
    return StoredUpload(token, path, "lines", "pasted text", len(data))


def load_upload(token: str) -> StoredUpload:
    folder = upload_dir()
    if not _TOKEN.match(token or ""):
        raise ImportFileError("This upload link is not valid. Upload the file again.")
    meta_path, path = folder / f"{token}.json", folder / f"{token}.data"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        size = path.stat().st_size
    except (OSError, ValueError):
        raise ImportFileError(
            "This upload has expired or was already imported. Upload the file again."
        ) from None
    return StoredUpload(token, path, meta["format"], meta["original_name"], size)


def discard_upload(upload: StoredUpload) -> None:
    for path in (upload.path, upload.path.with_suffix(".json")):
        path.unlink(missing_ok=True)


# Reading ------------------------------------------------------------------------------------


def check_utf8(path: Path) -> None:
    """Raise a clear error when a text file is not UTF-8 (checked before the preview)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as fh:
        head = fh.read(2)
        if head in (b"\xff\xfe", b"\xfe\xff"):
            raise ImportFileError(
                "The file is UTF-16, not UTF-8. Re-save it as UTF-8 (in Excel: File → Save As "
                "→ “CSV UTF-8”) and upload it again."
            )
        fh.seek(0)
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk.count(b"\n", 0, exc.start)
                bad = chunk[exc.start : exc.start + 1].hex().upper()
                raise ImportFileError(
                    f"The file is not UTF-8: byte 0x{bad} on line {line} cannot be read. "
                    "Re-save it as UTF-8 (in Excel: File → Save As → “CSV UTF-8”; in other "
                    "editors choose the UTF-8 encoding) and upload it again."
                ) from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ImportFileError(
                "The file is not UTF-8: it ends in the middle of a character. Re-save it as "
                "UTF-8 and upload it again."
            ) from None


def _open_text(path: Path) -> io.TextIOWrapper:
    return path.open("r", encoding="utf-8-sig", newline="")


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Header as row 0, then data rows numbered from 1."""
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        number = 0
        try:
            for number, row in enumerate(reader):  # noqa: B007 - used in the error message
                yield number, row
        except csv.Error as exc:
            raise ImportFileError(f"CSV row {number + 1} cannot be read: {exc}.") from None
        except UnicodeDecodeError:
            raise ImportFileError("The file is not UTF-8. Re-save it as UTF-8.") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(line number, object)``; ``None`` for a blank line."""
    loads = json.loads
    with _open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                yield number, None
                continue
            try:
                value = loads(line)
            except ValueError as exc:
                raise ImportFileError(
                    f"Line {number} is not valid JSON ({exc}). Each line of a JSON Lines file "
                    'must be one JSON object, e.g. {"id": "a1", "text": "…"}.'
                ) from None
            if not isinstance(value, dict):
                raise ImportFileError(
                    f"Line {number} is a JSON {type(value).__name__}, not an object. Each line "
                    'must be one JSON object, e.g. {"id": "a1", "text": "…"}.'
                )
            yield number, value


def _parquet_file(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ImportFileError(
            f"This is not a readable Parquet file ({exc}). Export it again as Parquet, or "
            "upload a CSV or JSON Lines file instead."
        ) from None


@dataclass
class Preview:
    format: str
    columns: list[str]
    rows: list[dict[str, str]]
    text_column: str
    id_column: str
    label_column: str
    notes: list[str] = field(default_factory=list)


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value if len(value) <= 300 else value[:300] + "…"
    return _shown(_as_text(value))


def _guess(columns: list[str], names: tuple[str, ...]) -> str:
    lowered = {c.lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    return ""


def _guess_text(columns: list[str], rows: list[dict[str, Any]], exclude: set[str]) -> str:
    named = _guess(columns, _TEXT_NAMES)
    if named:
        return named
    best, best_len = "", -1.0
    for col in columns:
        if col in exclude:
            continue
        values = [r.get(col) for r in rows]
        avg = sum(len(_as_text(v)) for v in values) / max(len(values), 1)
        if avg > best_len:
            best, best_len = col, avg
    return best


def preview_upload(upload: StoredUpload) -> Preview:
    """Columns and the first rows, with guesses for the text, id and label columns."""
    if upload.size == 0:
        raise ImportFileError("The file is empty. Choose a file with a header row and data.")
    fmt = upload.format
    if fmt == "parquet":
        pf = _parquet_file(upload.path)
        columns = list(pf.schema_arrow.names)
        rows: list[dict[str, Any]] = []
        for batch in pf.iter_batches(batch_size=PREVIEW_ROWS):
            rows = batch.to_pylist()[:PREVIEW_ROWS]
            break
        if pf.metadata.num_rows == 0:
            raise ImportFileError("The Parquet file has no rows.")
    else:
        check_utf8(upload.path)
        if fmt == "lines":
            columns = ["text"]
            rows = []
            with _open_text(upload.path) as fh:
                for line in fh:
                    if line.strip():
                        rows.append({"text": line.rstrip("\r\n")})
                    if len(rows) >= PREVIEW_ROWS:
                        break
            if not rows:
                raise ImportFileError("There is no text: paste one item per line.")
        elif fmt == "jsonl":
            columns, rows = [], []
            seen: set[str] = set()
            for number, obj in _jsonl_rows(upload.path):
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
                raise ImportFileError("The file has no JSON lines.")
        else:
            delimiter = "\t" if fmt == "tsv" else ","
            header: list[str] = []
            rows = []
            for number, row in _csv_rows(upload.path, delimiter):
                if number == 0:
                    header = [h.strip() for h in row]
                    continue
                rows.append(dict(zip(header, row, strict=False)))
                if len(rows) >= PREVIEW_ROWS:
                    break
            if not header or not any(header):
                raise ImportFileError("The file is empty. Choose a file with a header row.")
            if not rows:
                raise ImportFileError("The file has a header row but no data rows.")
            columns = header
    id_col = _guess(columns, _ID_NAMES)
    label_col = _guess(columns, _LABEL_NAMES)
    text_col = _guess_text(columns, rows, {id_col, label_col})
    return Preview(
        format=fmt,
        columns=columns,
        rows=[{c: _shown(r.get(c)) for c in columns} for r in rows],
        text_column=text_col,
        id_column=id_col,
        label_column=label_col,
    )


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


Record = tuple[int, Any, Any, Any, dict[str, Any]]  # row, text, id, label, metadata


def _missing_column(name: str, columns: list[str]) -> ImportFileError:
    listed = ", ".join(repr(c) for c in columns) or "none"
    return ImportFileError(f"Column {name!r} is not in the file. Available columns: {listed}.")


def iter_records(
    upload: StoredUpload, text_column: str, id_column: str, label_column: str
) -> Iterator[Record]:
    """Every row as ``(row number, text, id, label, metadata)``; other columns are metadata."""
    fmt = upload.format
    wanted = [c for c in (text_column, id_column, label_column) if c]
    if fmt == "lines":
        with _open_text(upload.path) as fh:
            for number, line in enumerate(fh, start=1):
                yield number, line.rstrip("\r\n"), None, None, {}
        return
    if fmt in ("csv", "tsv"):
        rows = _csv_rows(upload.path, "\t" if fmt == "tsv" else ",")
        try:
            _, header = next(rows)
        except StopIteration:
            raise ImportFileError("The file is empty.") from None
        header = [h.strip() for h in header]
        for name in wanted:
            if name not in header:
                raise _missing_column(name, header)
        ti = header.index(text_column)
        ii = header.index(id_column) if id_column else -1
        li = header.index(label_column) if label_column else -1
        meta_cols = [(i, h) for i, h in enumerate(header) if h and h not in wanted]
        width = len(header)
        for number, row in rows:
            if len(row) < width:
                row = row + [""] * (width - len(row))
            meta = {h: row[i] for i, h in meta_cols if row[i] != ""}
            extra = row[width:]
            while extra and extra[-1].strip() == "":
                extra.pop()  # trailing empty cells ("a,b,,") are common and hold nothing
            if extra:
                meta[EXTRA_CELLS_KEY] = extra
            yield (
                number,
                row[ti],
                row[ii] if ii >= 0 else None,
                row[li] if li >= 0 else None,
                meta,
            )
        return
    if fmt == "jsonl":
        first = True
        for number, obj in _jsonl_rows(upload.path):
            if obj is None:
                yield number, None, None, None, {}
                continue
            if first:
                first = False
                if text_column not in obj:
                    # Only the first object is checked: later ones may leave out optional keys.
                    raise _missing_column(text_column, list(obj))
            meta = {k: _json_safe(v) for k, v in obj.items() if k not in wanted}
            yield (
                number,
                obj.get(text_column),
                obj.get(id_column) if id_column else None,
                obj.get(label_column) if label_column else None,
                meta,
            )
        return
    if fmt == "parquet":
        pf = _parquet_file(upload.path)
        columns = list(pf.schema_arrow.names)
        for name in wanted:
            if name not in columns:
                raise _missing_column(name, columns)
        number = 0
        for batch in pf.iter_batches(batch_size=10_000):
            data = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
            texts = data[text_column]
            ids = data[id_column] if id_column else None
            labels = data[label_column] if label_column else None
            meta_cols = [(name, data[name]) for name in batch.schema.names if name not in wanted]
            for j, text in enumerate(texts):
                number += 1
                meta = {name: _json_safe(col[j]) for name, col in meta_cols if col[j] is not None}
                yield (
                    number,
                    text,
                    ids[j] if ids is not None else None,
                    labels[j] if labels is not None else None,
                    meta,
                )
        return
    raise ImportFileError(f"Unknown format {fmt!r}.")


# Importing ----------------------------------------------------------------------------------


def content_hash(text: str) -> str:
    """sha256 of the text with whitespace runs collapsed to one space and the ends trimmed."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


class _Finding:
    """A count with the first row numbers (and details) kept for the report."""

    def __init__(self) -> None:
        self.count = 0
        self.rows: list[Any] = []

    def add(self, entry: Any) -> None:
        self.count += 1
        if len(self.rows) < REPORT_ROWS:
            self.rows.append(entry)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "rows": self.rows, "more": self.count - len(self.rows)}


def _parse_label(value: Any) -> tuple[int | None, bool]:
    """``(label, valid)``; blank means no label and is valid."""
    if value is None:
        return None, True
    if isinstance(value, bool):
        return int(value), True
    if isinstance(value, int | float) and value in (0, 1):
        return int(value), True
    text = str(value).strip().lower()
    if text == "":
        return None, True
    if text in _TRUE:
        return 1, True
    if text in _FALSE:
        return 0, True
    try:
        number = float(text)
    except ValueError:
        return None, False
    return (int(number), True) if number in (0.0, 1.0) else (None, False)


def import_sample_set(
    *,
    upload: StoredUpload,
    name: str,
    by: Any,
    text_column: str,
    id_column: str = "",
    label_column: str = "",
    description: str = "",
    max_chars: int = DEFAULT_MAX_CHARS,
    batch_size: int = BATCH_SIZE,
) -> SampleSet:
    """Import every row of ``upload`` into a new sample set, in one transaction.

    Raises ``ImportFileError`` (nothing is saved) when the file cannot be read or has no item.
    """
    started = time.perf_counter()
    empty, over_long, renamed, bad_labels, nul_rows, generated, extra_cells = (
        _Finding() for _ in range(7)
    )
    tabular = upload.format in ("csv", "tsv")
    first_by_hash: dict[str, tuple[int, str]] = {}
    dup_groups: dict[str, list[tuple[int, str]]] = {}
    used_ids: set[str] = set()
    rows_read = imported = with_label = 0
    writer = _writer()

    with transaction.atomic():
        sample_set = SampleSet.objects.create(
            name=name,
            description=description,
            source_name=upload.original_name[:300],
            source_format=upload.format,
            created_by=by,
        )
        batch: list[tuple[Any, ...]] = []
        for row, raw_text, raw_id, raw_label, meta in iter_records(
            upload, text_column, id_column, label_column
        ):
            rows_read += 1
            text = raw_text if isinstance(raw_text, str) else _as_text(raw_text)
            if not text.strip():
                empty.add(row)
                continue
            if "\x00" in text:  # PostgreSQL text cannot hold NUL
                text = text.replace("\x00", "\ufffd")
                nul_rows.add(row)
            digest = hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()

            ext_id = "" if raw_id is None else _as_text(raw_id).strip()
            if not ext_id:
                ext_id = f"row-{row}"
                if id_column:
                    generated.add({"row": row, "id": ext_id})
            if len(ext_id) > EXTERNAL_ID_MAX or ext_id in used_ids:
                original = ext_id
                base = ext_id[: EXTERNAL_ID_MAX - 8]
                n = 2
                ext_id = f"{base}~{n}"
                while ext_id in used_ids:
                    n += 1
                    ext_id = f"{base}~{n}"
                renamed.add({"row": row, "original": original[:300], "new": ext_id})
            used_ids.add(ext_id)

            first = first_by_hash.get(digest)
            if first is None:
                first_by_hash[digest] = (row, ext_id)
            else:
                group = dup_groups.get(digest)
                if group is None:
                    group = dup_groups[digest] = [first]
                group.append((row, ext_id))

            if len(text) > max_chars:
                over_long.add({"row": row, "id": ext_id, "chars": len(text)})

            if tabular and EXTRA_CELLS_KEY in meta:
                extra_cells.add({"row": row, "cells": len(meta[EXTRA_CELLS_KEY])})

            label, valid = _parse_label(raw_label)
            if label is not None:
                with_label += 1
            if not valid:
                bad_labels.add({"row": row, "value": _as_text(raw_label)[:50]})

            batch.append((ext_id, text, digest, meta, label, row))
            imported += 1
            if len(batch) >= batch_size:
                writer(sample_set.pk, batch)
                batch = []
        if batch:
            writer(sample_set.pk, batch)
        if imported == 0:
            raise ImportFileError(
                f"There is nothing to import: all {rows_read} rows have an empty "
                f"{text_column or 'text'} column."
                if rows_read
                else "There is nothing to import: the file has no data rows."
            )

        duplicate_items = sum(len(g) - 1 for g in dup_groups.values())
        groups = sorted(dup_groups.values(), key=lambda g: g[0][0])[:REPORT_ROWS]
        sample_set.item_count = imported
        sample_set.report = {
            "format": upload.format,
            "columns": {"text": text_column, "id": id_column, "label": label_column},
            "rows_read": rows_read,
            "imported": imported,
            "empty_rows": empty.to_dict(),
            "duplicates": {
                "items": duplicate_items,
                "groups": len(dup_groups),
                "examples": [
                    {"rows": [r for r, _ in g[:20]], "ids": [i for _, i in g[:20]], "size": len(g)}
                    for g in groups
                ],
                "more": max(0, len(dup_groups) - len(groups)),
            },
            "over_long": {**over_long.to_dict(), "limit": max_chars},
            "renamed_ids": renamed.to_dict(),
            "generated_ids": generated.to_dict(),
            "invalid_labels": bad_labels.to_dict(),
            "nul_replaced": nul_rows.to_dict(),
            "extra_cells": {
                **extra_cells.to_dict(),
                "message": (
                    f"{extra_cells.count} row{'s' if extra_cells.count != 1 else ''} had more "
                    "cells than the header; the extra cells were kept in the item's metadata "
                    f"under {EXTRA_CELLS_KEY!r}."
                    if extra_cells.count
                    else ""
                ),
            },
            "with_expected_label": with_label,
            "seconds": 0.0,
        }
        sample_set.report["seconds"] = round(time.perf_counter() - started, 3)
        sample_set.save(update_fields=["item_count", "report"])
    return sample_set


def _writer() -> Any:
    """PostgreSQL: ``COPY``; elsewhere one ``executemany`` INSERT per batch.

    Both skip building 5,000 model instances per batch, which is most of ``bulk_create``'s
    time at this size (100k items on SQLite: 9.0 s with bulk_create, 4.2 s like this).
    """
    if connection.vendor == "postgresql":
        return _copy_items
    return _insert_items


_COLUMNS = "sample_set_id, external_id, text, content_hash, metadata, expected_label, row_number"


def _insert_items(sample_set_id: int, batch: list[tuple[Any, ...]]) -> None:
    table = connection.ops.quote_name(Item._meta.db_table)
    dumps = json.dumps
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (sample_set_id, ext_id, text, digest, dumps(meta), label, row)
                for ext_id, text, digest, meta, label, row in batch
            ],
        )


def _copy_items(sample_set_id: int, batch: list[tuple[Any, ...]]) -> None:
    table = connection.ops.quote_name(Item._meta.db_table)
    dumps = json.dumps
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN") as copy:
            for ext_id, text, digest, meta, label, row in batch:
                copy.write_row((sample_set_id, ext_id, text, digest, dumps(meta), label, row))
