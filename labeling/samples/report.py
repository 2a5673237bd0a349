"""Each record checked into the item row the writer stores, and what the check finds, kept for
the report stored on the sample set. Nothing is dropped silently:

* empty rows: skipped (there is nothing to label);
* duplicates (same sha256 of the whitespace-normalised text): imported and reported;
* over-long items (over ``max_chars``): imported and reported; the worker gives them a
  per-item "over budget" error at scoring time, which the job page counts as excluded;
* duplicate external ids: imported under a suffixed id (``abc~2``), old and new id reported;
  rejecting the file would make a 100k-row export unusable for one repeated id;
* expected labels that are not 0/1: the item is imported without one, the row is reported;
* CSV rows with more cells than the header: the extra cells are kept in the item's metadata
  under ``"_extra_cells"``; rows with fewer cells, or whose quoted field holds line breaks
  that look like rows of their own (a quote is probably missing): imported as read;
* NUL characters and unpaired surrogates: replaced by U+FFFD, the rows reported;
* tags (a tag column, or a test pack's functionality / category): trimmed; one longer than
  ``TAG_MAX`` is cut there and the row reported. The report keeps how many items each tag has
  (the ``TAGS_KEPT`` largest, and the number of distinct tags up to ``TAGS_COUNTED``): the job
  page reads its tag breakdown from it without scanning the items.

Each finding keeps its count and the first ``REPORT_ROWS`` row numbers.
"""

from __future__ import annotations

from typing import Any

from labeling.samples.csv_reader import delimiter_word
from labeling.samples.packs import PACK_LABEL_VALUES, PACK_NAMES
from labeling.samples.records import EXTRA_CELLS_KEY, Columns, Record
from labeling.samples.values import as_text, clean_str, content_digest, parse_label
from labeling.samples.writer import ItemRow

REPORT_ROWS = 200  # row numbers listed per finding; the counts are always complete
EXTERNAL_ID_MAX = 255
TAG_MAX = 200  # Item.tag's max_length
TAGS_KEPT = 50  # the largest tags listed in the report; the job page shows at most these
TAGS_COUNTED = 10_000  # distinct tags counted in memory; past this the count says "more"


class Finding:
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


class ImportReport:
    """The checks of one import, record by record, and the report they add up to."""

    def __init__(self, *, fmt: str, columns: Columns, max_chars: int, pack: str = "") -> None:
        self.format, self.columns, self.max_chars = fmt, columns, max_chars
        self.pack = pack  # a test pack's key, or ""
        self.long_tags = Finding()
        self._tags: dict[str, int] = {}
        self._tags_over = False  # more distinct tags than TAGS_COUNTED
        self.rows_read = self.imported = self.with_label = 0
        self.empty = Finding()
        self.over_long = Finding()
        self.nul = Finding()
        self.renamed_ids = Finding()
        self.generated_ids = Finding()
        self.invalid_labels = Finding()
        self.extra_cells = Finding()
        self.missing_cells = Finding()
        self.swallowed = Finding()
        self._first_by_hash: dict[bytes, tuple[int, str]] = {}
        self._duplicates: dict[bytes, list[tuple[int, str]]] = {}
        self._used_ids: set[str] = set()

    def check(self, record: Record) -> ItemRow | None:
        """The item row to write for ``record``, or None for an empty row; notes what it
        finds."""
        row = record.row
        self.rows_read += 1
        text = record.text if isinstance(record.text, str) else as_text(record.text)
        if "nul" in record.findings:
            self.nul.add(row)
        if not text.strip():
            self.empty.add(row)
            return None
        text = clean_str(text)[0]
        digest = content_digest(text)
        external_id = self._external_id(row, record.id)
        self._note_duplicate(digest, row, external_id)
        if len(text) > self.max_chars:
            self.over_long.add({"row": row, "id": external_id, "chars": len(text)})
        if self.format in ("csv", "tsv"):
            self._note_cells(record)
        label = self._label(row, record.label)
        tag = self._tag(row, record)
        self.imported += 1
        return ItemRow(external_id, text, digest.hex(), record.metadata, label, row, tag)

    def _external_id(self, row: int, raw: Any) -> str:
        """The row's id, unique in the set: ``row-<n>`` when it has none, suffixed (``~2``)
        when it was used already or is too long."""
        external_id = "" if raw is None else clean_str(as_text(raw))[0].strip()
        if not external_id:
            external_id = f"row-{row}"
            if self.columns.id:
                self.generated_ids.add({"row": row, "id": external_id})
        if len(external_id) > EXTERNAL_ID_MAX or external_id in self._used_ids:
            original = external_id
            base = external_id[: EXTERNAL_ID_MAX - 8]
            n = 2
            external_id = f"{base}~{n}"
            while external_id in self._used_ids:
                n += 1
                external_id = f"{base}~{n}"
            self.renamed_ids.add({"row": row, "original": original[:300], "new": external_id})
        self._used_ids.add(external_id)
        return external_id

    def _note_duplicate(self, digest: bytes, row: int, external_id: str) -> None:
        first = self._first_by_hash.get(digest)
        if first is None:
            self._first_by_hash[digest] = (row, external_id)
            return
        group = self._duplicates.get(digest)
        if group is None:
            group = self._duplicates[digest] = [first]
        group.append((row, external_id))

    def _note_cells(self, record: Record) -> None:
        if EXTRA_CELLS_KEY in record.metadata:
            self.extra_cells.add(
                {"row": record.row, "cells": len(record.metadata[EXTRA_CELLS_KEY])}
            )
        if "swallowed" in record.findings:
            self.swallowed.add(record.row)
        if "missing_cells" in record.findings:
            self.missing_cells.add(record.row)

    def _tag(self, row: int, record: Record) -> str:
        tag, changed = clean_str(as_text(record.tag).strip())  # None reads as ""
        if changed and "nul" not in record.findings:
            self.nul.add(row)
        if len(tag) > TAG_MAX:
            self.long_tags.add({"row": row, "chars": len(tag)})
            tag = tag[:TAG_MAX].rstrip()
        if tag in self._tags:
            self._tags[tag] += 1
        elif len(self._tags) < TAGS_COUNTED:
            self._tags[tag] = 1
        else:
            self._tags_over = True
        return tag

    def tags_dict(self) -> dict[str, Any]:
        """How the items are tagged: the source, the largest tags with their item counts
        (untagged items under ""), and how many distinct tags there are."""
        largest = sorted(self._tags.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "column": self.columns.tag,
            "pack": self.pack,
            "pack_name": PACK_NAMES.get(self.pack, ""),
            "pack_labels": PACK_LABEL_VALUES.get(self.pack, ""),
            "distinct": len([t for t in self._tags if t]),
            "more": self._tags_over,
            "largest": [[tag, n] for tag, n in largest if tag][:TAGS_KEPT],
            "untagged": self._tags.get("", 0),
            "long": self.long_tags.to_dict(),
        }

    def _label(self, row: int, raw: Any) -> int | None:
        label, valid = parse_label(raw)
        if label is not None:
            self.with_label += 1
        if not valid:
            self.invalid_labels.add({"row": row, "value": clean_str(as_text(raw))[0][:50]})
        return label

    def to_dict(self, *, delimiter: str | None, seconds: float) -> dict[str, Any]:
        """The report stored on the sample set (``SampleSet.report``)."""
        columns = self.columns
        return {
            "format": self.format,
            "columns": {
                "text": columns.text,
                "id": columns.id,
                "label": columns.label,
                "tag": columns.tag,
            },
            "delimiter": delimiter_word(delimiter) if delimiter else "",
            "rows_read": self.rows_read,
            "imported": self.imported,
            "empty_rows": self.empty.to_dict(),
            "duplicates": self._duplicates_dict(),
            "over_long": {**self.over_long.to_dict(), "limit": self.max_chars},
            "renamed_ids": self.renamed_ids.to_dict(),
            "generated_ids": self.generated_ids.to_dict(),
            "invalid_labels": self.invalid_labels.to_dict(),
            "nul_replaced": self.nul.to_dict(),
            "extra_cells": {**self.extra_cells.to_dict(), "message": self._extra_message()},
            "missing_cells": self.missing_cells.to_dict(),
            "swallowed_lines": self.swallowed.to_dict(),
            "with_expected_label": self.with_label,
            "tags": self.tags_dict(),
            "seconds": round(seconds, 3),
        }

    def _duplicates_dict(self) -> dict[str, Any]:
        groups = self._duplicates
        shown = sorted(groups.values(), key=lambda g: g[0][0])[:REPORT_ROWS]
        return {
            "items": sum(len(g) - 1 for g in groups.values()),
            "groups": len(groups),
            "examples": [
                {"rows": [r for r, _ in g[:20]], "ids": [i for _, i in g[:20]], "size": len(g)}
                for g in shown
            ],
            "more": max(0, len(groups) - len(shown)),
        }

    def _extra_message(self) -> str:
        count = self.extra_cells.count
        if not count:
            return ""
        return (
            f"{count} row{'s' if count != 1 else ''} had more cells than the header; the "
            f"extra cells were kept in the item's metadata under {EXTRA_CELLS_KEY!r}."
        )
