"""Stored uploads: a file (or pasted text) kept under ``DATA_DIR/uploads/<token>.data``, mode
600, between the preview and the import; its type and size limits; stale ones deleted.

A ``<token>.json`` beside each file holds its format and original name. Uploads nobody
imported (the preview was left open, the tab closed) are deleted after ``UPLOAD_TTL_SECONDS``,
by the next upload and by the hourly ``labeling.clean_uploads`` task.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.move import file_move_safe
from django.core.files.uploadedfile import UploadedFile

from labeling.models import SampleSet, SampleSetStatus
from labeling.samples.errors import ImportFileError

UPLOAD_TTL_SECONDS = 3 * 3600
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
_TOKEN = re.compile(r"^[0-9a-f]{32}$")


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


def format_for_filename(name: str) -> str:
    suffix = Path(name).suffix.lower()
    fmt = _EXTENSIONS.get(suffix)
    if fmt is None:
        shown = (suffix or "(no extension)").replace("\x00", "")
        raise ImportFileError(
            f"Files of type {shown} cannot be imported. Upload a .csv, .tsv, .jsonl or "
            ".parquet file, or paste one item per line."
        )
    return fmt


def max_upload_bytes() -> int:
    return int(settings.COPE_MAX_UPLOAD_MB) * 1024 * 1024


def too_big(size: int) -> ImportFileError:
    return ImportFileError(
        f"The file is {size / 1024 / 1024:.1f} MB; the limit is "
        f"{settings.COPE_MAX_UPLOAD_MB} MB (COPE_MAX_UPLOAD_MB). Split it, or ask an admin "
        "to raise the limit."
    )


def upload_dir() -> Path:
    path = Path(settings.DATA_DIR) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def store_upload(uploaded: UploadedFile[bytes]) -> StoredUpload:
    """Move (or stream) an uploaded file to the uploads folder, mode 600; checks its type and
    size first. A file Django spooled to disk is moved, not read; one in memory is small."""
    name = (uploaded.name or "upload").replace("\x00", "")[:300]
    fmt = format_for_filename(name)
    limit = max_upload_bytes()
    if uploaded.size is not None and uploaded.size > limit:
        raise too_big(uploaded.size)
    token, path = _new_upload(fmt, name)
    try:
        size = _move_or_stream(uploaded, path, limit)
        if size > limit:
            raise too_big(size)
    except BaseException:
        discard_upload(StoredUpload(token, path, fmt, name, 0))
        raise
    return StoredUpload(token, path, fmt, name, size)


def _move_or_stream(uploaded: UploadedFile[bytes], path: Path, limit: int) -> int:
    """Put the upload at ``path`` and return its size; stops streaming past ``limit``."""
    temporary = getattr(uploaded, "temporary_file_path", None)
    if temporary is not None:
        file_move_safe(temporary(), str(path))
        os.chmod(path, 0o600)
        try:
            uploaded.close()  # its temporary file is gone: moved
        except FileNotFoundError:
            pass
        return path.stat().st_size
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in uploaded.chunks():
            size += len(chunk)
            if size > limit:
                raise too_big(size)
            out.write(chunk)
    return size


def store_pasted(text: str) -> StoredUpload:
    token, path = _new_upload("lines", "pasted text")
    data = text.encode("utf-8", "surrogatepass")
    _write_private(path, data)
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
    if not upload.token:  # a file read in place (seed_demo), not an upload
        return
    for path in (upload.path, upload.path.with_suffix(".json")):
        path.unlink(missing_ok=True)


def remove_stale_uploads() -> int:
    """Delete uploads older than ``UPLOAD_TTL_SECONDS``, except those of imports still
    running; returns how many files went."""
    folder = upload_dir()
    cutoff = time.time() - UPLOAD_TTL_SECONDS
    stale = []
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                stale.append(path)
        except OSError:
            pass
    if not stale:
        return 0
    keep = _running_tokens()
    removed = 0
    for path in stale:
        if path.name.split(".", 1)[0] in keep:
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _running_tokens() -> set[str]:
    options = SampleSet.objects.filter(status=SampleSetStatus.IMPORTING).values_list(
        "import_options", flat=True
    )
    return {str(o.get("token", "")) for o in options if isinstance(o, dict)} - {""}


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _new_upload(fmt: str, original_name: str) -> tuple[str, Path]:
    folder = upload_dir()
    remove_stale_uploads()
    token = secrets.token_hex(16)
    meta = {"format": fmt, "original_name": original_name}
    _write_private(folder / f"{token}.json", json.dumps(meta).encode("utf-8"))
    return token, folder / f"{token}.data"
