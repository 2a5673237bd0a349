"""Reading CSV and TSV: rows parsed strictly with the lines they span, damage explained with
its line number, the separator sniffed, and rows that look swallowed by a missing quote."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

from labeling.samples.errors import ImportFileError
from labeling.samples.values import MAX_FIELD_CHARS, clean_str

DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
DELIMITER_NAMES = {v: k for k, v in DELIMITERS.items()}

csv.field_size_limit(MAX_FIELD_CHARS)


def delimiter_word(delimiter: str) -> str:
    return DELIMITER_NAMES.get(delimiter, repr(delimiter))


def default_delimiter(fmt: str) -> str:
    return "\t" if fmt == "tsv" else ","


@dataclass(slots=True)
class CsvRow:
    number: int  # data rows from 1; the header is 0
    cells: list[str]
    first_line: int
    last_line: int


def _csv_error(exc: csv.Error, delimiter: str, first: int, line: int, whole: bool) -> str:
    text = str(exc)
    word = delimiter_word(delimiter)
    if "unexpected end of data" in text:
        where = "the end of the file" if whole else "the end of what was read"
        return (
            f"Line {first} opens a quoted field that is never closed: everything from line "
            f"{first} to {where} would become one item. Close the quote, or write it twice "
            '("") if it is part of the text.'
        )
    if "expected after" in text:
        return (
            f"Line {line} has a stray quote: a quoted field ends and more text follows before "
            f'the next {word}. Inside a quoted field a quote must be written twice (""); '
            "a field that is not meant to be quoted must not start with a quote."
        )
    if "field larger than field limit" in text:
        return (
            f"The field starting on line {first} is longer than {MAX_FIELD_CHARS:,} "
            "characters: a quote is probably never closed. Check the quotes on that line."
        )
    return f"Line {line} cannot be read as CSV: {text}."


def csv_rows(lines: Iterator[str], delimiter: str, *, whole: bool = True) -> Iterator[CsvRow]:
    """Rows parsed strictly, with the lines they span; damage is an ``ImportFileError``.

    ``whole`` False: the lines are a head of the file, and a quote still open at their end
    is described as running to the end of what was read."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    number, last = -1, 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(
                _csv_error(exc, delimiter, last + 1, reader.line_num, whole)
            ) from None
        number += 1
        yield CsvRow(number, cells, last + 1, reader.line_num)
        last = reader.line_num


def csv_header(cells: list[str]) -> tuple[list[str], bool]:
    """Column names, trimmed and cleaned; and whether any held a NUL."""
    header, changed = [], False
    for cell in cells:
        clean, cell_changed = clean_str(cell.strip())
        header.append(clean)
        changed = changed or cell_changed
    return header, changed


def swallowed(cells: list[str], delimiter: str, width: int) -> bool:
    """A field whose later lines look like rows of their own (as many separators as the
    header has): a quote before them is probably missing."""
    if width < 2:
        return False
    for cell in cells:
        if "\n" not in cell and "\r" not in cell:
            continue
        for line in cell.splitlines()[1:]:
            if line.count(delimiter) >= width - 1:
                return True
    return False


def _consistency(sample: str, delimiter: str) -> tuple[float, int]:
    """``(share of rows as wide as the first, the first row's width)`` of a head read with
    ``delimiter``; at most 50 rows are looked at."""
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
    widths: list[int] = []
    try:
        for row in reader:
            widths.append(len(row))
            if len(widths) > 50:
                break
    except csv.Error:
        pass
    if not widths or widths[0] < 2:
        return 0.0, 0
    rows = widths[1:-1] or widths[1:] or widths[:1]
    same = sum(1 for w in rows if w == widths[0]) / len(rows)
    return same, widths[0]


def sniff_delimiter(head: str, fmt: str) -> str:
    """The separator of a CSV/TSV head: the format's own when it gives a consistent table,
    else the candidate (comma, semicolon, tab, pipe) that does."""
    default = default_delimiter(fmt)
    sample = head[:200_000]
    own = _consistency(sample, default)
    if own[1] >= 2 and own[0] >= 0.8:
        return default
    best, best_score = default, own
    for delimiter in DELIMITERS.values():
        if delimiter == default:
            continue
        candidate = _consistency(sample, delimiter)
        if candidate[1] >= 2 and candidate[0] >= 0.8 and candidate > best_score:
            best, best_score = delimiter, candidate
    return best
