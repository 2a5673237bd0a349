"""Reading text files (CSV, TSV, JSON Lines, pasted lines): the UTF-8 check, the bounded head
the preview reads, lines of bounded length, and the bytes read so far for the progress bar."""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from labeling.samples.errors import ImportFileError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# The preview reads this much of a text file, whatever its size.
HEAD_BYTES = 1024 * 1024
# One JSON or pasted line at most (a CSV line is bounded by its field limit instead).
MAX_LINE_CHARS = 10_000_000

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _utf16() -> ImportFileError:
    return ImportFileError(
        "The file is UTF-16, not UTF-8. Re-save it as UTF-8 (in Excel: File → Save As "
        "→ “CSV UTF-8”) and upload it again."
    )


def _cut_character() -> ImportFileError:
    return ImportFileError(
        "The file is not UTF-8: it ends in the middle of a character. Re-save it as "
        "UTF-8 and upload it again."
    )


def _utf8_error(chunk: bytes, exc: UnicodeDecodeError, line: int) -> ImportFileError:
    line += chunk.count(b"\n", 0, exc.start)
    bad = chunk[exc.start : exc.start + 1].hex().upper()
    return ImportFileError(
        f"The file is not UTF-8: byte 0x{bad} on line {line} cannot be read. "
        "Re-save it as UTF-8 (in Excel: File → Save As → “CSV UTF-8”; in other "
        "editors choose the UTF-8 encoding) and upload it again."
    )


def check_utf8(path: Path) -> None:
    """Raise a clear error when a text file is not UTF-8 (run over the whole file by the
    import task; the preview checks the head it reads)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as fh:
        if fh.read(2) in _UTF16_BOMS:
            raise _utf16()
        fh.seek(0)
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise _utf8_error(chunk, exc, line) from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _cut_character() from None


def read_head(path: Path) -> tuple[str, bool]:
    """The first ``HEAD_BYTES`` as text, whole lines only, and whether that is the whole
    file."""
    with path.open("rb") as fh:
        data = fh.read(HEAD_BYTES + 1)
    whole = len(data) <= HEAD_BYTES
    data = data[:HEAD_BYTES]
    if data[:2] in _UTF16_BOMS:
        raise _utf16()
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(data, final=whole)
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            raise _cut_character() from None
        raise _utf8_error(data, exc, 1) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not whole:
        # Only whole lines: the last one may be cut.
        cut = max(text.rfind("\n"), text.rfind("\r"))
        text = text[: cut + 1] if cut >= 0 else ""
    return text, whole


class ByteCounter(io.RawIOBase):
    """Counts the bytes read from a file, for the import's progress."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self.raw, self.count = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_counted(path: Path) -> tuple[io.TextIOWrapper, ByteCounter]:
    """The file as text (a UTF-8 BOM skipped, line ends kept) and its byte counter."""
    counter = ByteCounter(path.open("rb"))
    text = io.TextIOWrapper(io.BufferedReader(counter), encoding="utf-8-sig", newline="")
    return text, counter


def bounded_lines(fh: io.TextIOBase) -> Iterator[str]:
    """Lines of at most ``MAX_LINE_CHARS``; a longer one is an error, not a memory spike."""
    number = 0
    while line := fh.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise ImportFileError(
                f"Line {number} is longer than {MAX_LINE_CHARS:,} characters. Split it, or "
                "check that the file really has one item per line."
            )
        yield line
