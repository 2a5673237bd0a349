"""The import service: a stored upload becomes a sample set of items.

Confirming a preview creates the set as ``importing`` and returns (``begin_import``); the
``labeling.run_import`` task (queue ``default``) reads the whole file, writes the items in
committed batches with progress on the set, and ends ``ready``, or ``failed`` with the reason,
its items removed and the upload deleted (``run_import``). A job takes only a ready set. The
hourly ``labeling.clean_uploads`` task fails imports whose worker was lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cope_studio.celery import app
from labeling.models import SampleSet, SampleSetStatus
from labeling.samples.errors import ImportFileError
from labeling.samples.packs import apply_pack
from labeling.samples.records import Columns, Progress, iter_records
from labeling.samples.report import ImportReport
from labeling.samples.uploads import StoredUpload, discard_upload, load_upload, remove_stale_uploads
from labeling.samples.values import clean_str
from labeling.samples.writer import ItemRow, Writer, delete_items, item_writer

log = logging.getLogger(__name__)
# The admin role's own permission on sets: archive anyone's (and delete, in Django admin).
ARCHIVE_ANY = "labeling.delete_sampleset"

# Celery task names (``labeling.tasks``); settings.CELERY_BEAT_SCHEDULE names the second.
RUN_IMPORT_TASK = "labeling.run_import"
CLEAN_UPLOADS_TASK = "labeling.clean_uploads"

DEFAULT_MAX_CHARS = 20_000
BATCH_SIZE = 5_000
BATCH_CHARS = 32_000_000  # a batch of items is written early once its texts reach this size

# ``on_progress(done, total, rows)``: False when the import should stop.
ProgressCallback = Callable[[int, int, int], bool]


@dataclass(frozen=True)
class ImportOptions:
    text_column: str
    id_column: str = ""
    label_column: str = ""
    max_chars: int = DEFAULT_MAX_CHARS
    delimiter: str | None = None  # CSV/TSV: None sniffs the separator
    tag_column: str = ""
    pack: str = ""  # a test pack's key (``labeling.samples.packs``): its labels and tags

    @property
    def columns(self) -> Columns:
        return Columns(self.text_column, self.id_column, self.label_column, self.tag_column)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text_column": self.text_column,
            "id_column": self.id_column,
            "label_column": self.label_column,
            "max_chars": self.max_chars,
            "delimiter": self.delimiter,
            "tag_column": self.tag_column,
            "pack": self.pack,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportOptions:
        return cls(
            text_column=str(data.get("text_column", "")),
            id_column=str(data.get("id_column") or ""),
            label_column=str(data.get("label_column") or ""),
            max_chars=int(data.get("max_chars") or DEFAULT_MAX_CHARS),
            delimiter=str(data.get("delimiter") or "") or None,
            tag_column=str(data.get("tag_column") or ""),
            pack=str(data.get("pack") or ""),
        )


def can_archive(user: User, sample_set: SampleSet) -> bool:
    """Admins archive any set; others only the sets they imported."""
    return bool(user.has_perm(ARCHIVE_ANY)) or sample_set.created_by_id == user.pk


def archive_sample_set(*, sample_set: SampleSet, by: User) -> bool:
    """Archive a set: gone from choices and the default list, its items and jobs kept; returns
    whether this call archived it."""
    with transaction.atomic():
        return bool(
            SampleSet.objects.filter(pk=sample_set.pk, archived_at__isnull=True).update(
                archived_at=timezone.now(), archived_by=by
            )
        )


def restore_sample_set(*, sample_set: SampleSet) -> bool:
    with transaction.atomic():
        return bool(
            SampleSet.objects.filter(pk=sample_set.pk, archived_at__isnull=False).update(
                archived_at=None, archived_by=None
            )
        )


def import_sample_set(
    *,
    upload: StoredUpload,
    name: str,
    by: User,
    text_column: str,
    id_column: str = "",
    label_column: str = "",
    description: str = "",
    max_chars: int = DEFAULT_MAX_CHARS,
    delimiter: str | None = None,
    tag_column: str = "",
    pack: str = "",
    batch_size: int = BATCH_SIZE,
) -> SampleSet:
    """Import every row of ``upload`` into a new, ready sample set, in this process (the
    demo seeding and tests; the pages use ``begin_import``).

    Raises ``ImportFileError`` when the file cannot be read or has no item; nothing is kept.
    The upload itself is left where it is."""
    options = ImportOptions(
        text_column, id_column, label_column, max_chars, delimiter, tag_column, pack
    )
    sample_set = _new_sample_set(
        upload=upload, name=name, description=description, by=by, options=options
    )
    try:
        count, report = _fill(sample_set, upload, options, batch_size=batch_size)
    except BaseException:
        delete_items(sample_set.pk)
        sample_set.delete()
        raise
    sample_set.item_count, sample_set.report = count, report
    sample_set.status = SampleSetStatus.READY
    sample_set.progress_done = sample_set.progress_total
    sample_set.save(update_fields=["item_count", "report", "status", "progress_done"])
    return sample_set


def begin_import(
    *,
    upload: StoredUpload,
    name: str,
    by: User,
    options: ImportOptions,
    description: str = "",
) -> SampleSet:
    """Create the sample set as ``importing`` and send ``labeling.run_import`` once committed.

    Costs the same whatever the file's size: the task reads it."""
    if upload.token:  # the confirm button pressed twice: one import per upload
        existing = SampleSet.objects.filter(import_options__token=upload.token).first()
        if existing is not None:
            return existing
    with transaction.atomic():
        sample_set = _new_sample_set(
            upload=upload, name=name, description=description, by=by, options=options
        )
        # By name through the web side's app, like every other send: ``task.delay`` would go
        # through whichever Celery app is "current" in this process (the model worker's, once
        # ``worker.celery_app`` is imported), and so to its broker.
        pk = sample_set.pk
        transaction.on_commit(lambda: app.send_task(RUN_IMPORT_TASK, args=[pk], queue="default"))
    return sample_set


def run_import(*, sample_set_id: int, batch_size: int = BATCH_SIZE) -> str:
    """The task's work: fill an ``importing`` set and mark it ready, or failed with the reason,
    its items removed. The upload is deleted either way. Safe to run twice: a redelivered task
    (the worker died mid-import) starts again from an empty set; a finished set is left alone.
    Returns ``ready``, ``failed`` or ``skipped``."""
    sample_set = SampleSet.objects.filter(pk=sample_set_id).first()
    if sample_set is None or sample_set.status != SampleSetStatus.IMPORTING:
        return "skipped"
    options = ImportOptions.from_dict(sample_set.import_options)
    token = str(sample_set.import_options.get("token", ""))
    delete_items(sample_set.pk)  # a previous attempt that died half-way
    upload: StoredUpload | None = None
    try:
        upload = load_upload(token)
        count, report = _fill(
            sample_set,
            upload,
            options,
            batch_size=batch_size,
            on_progress=lambda done, total, rows: _save_progress(sample_set_id, done, total, rows),
        )
    except Exception as exc:  # noqa: BLE001 - every failure must end the import visibly
        fail_import(sample_set_id=sample_set_id, reason=_failure_reason(sample_set_id, exc))
        if upload is not None:
            discard_upload(upload)
        return "failed"
    with transaction.atomic():
        finished = SampleSet.objects.filter(
            pk=sample_set_id, status=SampleSetStatus.IMPORTING
        ).update(
            status=SampleSetStatus.READY,
            item_count=count,
            report=report,
            rows_done=report["rows_read"],
            progress_done=F("progress_total"),
            progress_at=timezone.now(),
        )
    discard_upload(upload)
    if finished != 1:  # failed or deleted meanwhile: do not leave its items behind
        delete_items(sample_set_id)
        return "failed"
    return "ready"


def _save_progress(sample_set_id: int, done: int, total: int, rows: int) -> bool:
    """Progress on a set still importing; False when it was failed or deleted meanwhile."""
    changed = SampleSet.objects.filter(pk=sample_set_id, status=SampleSetStatus.IMPORTING).update(
        progress_done=done, progress_total=total, rows_done=rows, progress_at=timezone.now()
    )
    return changed == 1


def _failure_reason(sample_set_id: int, exc: Exception) -> str:
    if isinstance(exc, ImportFileError):
        return str(exc)
    log.error("import of sample set %s failed", sample_set_id, exc_info=exc)
    return (
        f"The import stopped on an unexpected error ({type(exc).__name__}). Nothing "
        "was kept; try again, and tell an admin if it happens again."
    )


def fail_import(*, sample_set_id: int, reason: str) -> bool:
    """Mark an importing set failed with ``reason`` and remove its items; False if it was not
    importing."""
    reason = clean_str(reason)[0][:2000]
    with transaction.atomic():
        changed = SampleSet.objects.filter(
            pk=sample_set_id, status=SampleSetStatus.IMPORTING
        ).update(status=SampleSetStatus.FAILED, error=reason, item_count=0, report={})
    delete_items(sample_set_id)
    return changed == 1


def clean_abandoned_imports(*, stale_after: float | None = None) -> dict[str, int]:
    """Hourly (``labeling.clean_uploads``): fail imports that made no progress for longer
    than the task time limit (their worker died and the task is not coming back), and
    delete uploads nobody imported within ``UPLOAD_TTL_SECONDS``."""
    limit = stale_after if stale_after is not None else settings.CELERY_TASK_TIME_LIMIT + 60
    cutoff = timezone.now() - timedelta(seconds=limit)
    stale = list(
        SampleSet.objects.filter(
            status=SampleSetStatus.IMPORTING, progress_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    failed = 0
    for pk in stale:
        failed += fail_import(
            sample_set_id=pk,
            reason="The import stopped making progress (its worker was lost). Nothing was "
            "kept; import the file again.",
        )
    removed = remove_stale_uploads()  # a failed import's upload is no longer kept
    return {"failed_imports": failed, "removed_uploads": removed}


def _new_sample_set(
    *, upload: StoredUpload, name: str, description: str, by: User, options: ImportOptions
) -> SampleSet:
    return SampleSet.objects.create(
        name=name,
        description=description,
        source_name=upload.original_name[:300],
        source_format=upload.format,
        created_by=by,
        status=SampleSetStatus.IMPORTING,
        import_options={**options.to_dict(), "token": upload.token},
        progress_total=upload.size,
        progress_at=timezone.now(),
    )


# Reading the file into items -----------------------------------------------------------------


@dataclass
class _Batches:
    """Item rows written a committed batch at a time; each batch's transaction also saves the
    progress, and stops the import when ``save_progress`` says so."""

    sample_set_id: int
    size: int
    write: Writer
    save_progress: Callable[[], bool]
    rows: list[ItemRow] = field(default_factory=list)
    chars: int = 0

    def add(self, row: ItemRow) -> None:
        self.rows.append(row)
        self.chars += len(row.text)
        if len(self.rows) >= self.size or self.chars >= BATCH_CHARS:
            self.flush()

    def flush(self) -> None:
        with transaction.atomic():
            if self.rows:
                self.write(self.sample_set_id, self.rows)
            if not self.save_progress():
                raise ImportFileError("The import was stopped.")
        self.rows, self.chars = [], 0


def _fill(
    sample_set: SampleSet,
    upload: StoredUpload,
    options: ImportOptions,
    *,
    batch_size: int,
    on_progress: ProgressCallback | None = None,
) -> tuple[int, dict[str, Any]]:
    """Read the whole file into ``sample_set``'s items, a committed batch at a time.

    ``on_progress(done, total, rows)`` runs inside each batch's transaction and returns False
    when the import should stop (its set was failed or deleted meanwhile). Returns the item
    count and the report. Raises ``ImportFileError``; the caller removes what was written.
    """
    started = time.perf_counter()
    report = ImportReport(
        fmt=upload.format,
        columns=options.columns,
        max_chars=options.max_chars,
        pack=options.pack,
    )
    progress = Progress()

    def save_progress() -> bool:
        if on_progress is None:
            return True
        return on_progress(progress.done, progress.total, report.rows_read)

    batches = _Batches(sample_set.pk, batch_size, item_writer(), save_progress)
    records = iter_records(upload, options.columns, delimiter=options.delimiter, progress=progress)
    if options.pack:
        records = apply_pack(options.pack, records)
    for record in records:
        row = report.check(record)
        if row is not None:
            batches.add(row)
    progress.done = progress.total
    batches.flush()
    if report.imported == 0:
        raise ImportFileError(_nothing_to_import(report.rows_read, options.text_column))
    seconds = time.perf_counter() - started
    return report.imported, report.to_dict(delimiter=options.delimiter, seconds=seconds)


def _nothing_to_import(rows_read: int, text_column: str) -> str:
    if not rows_read:
        return "There is nothing to import: the file has no data rows."
    return (
        f"There is nothing to import: all {rows_read} rows have an empty "
        f"{text_column or 'text'} column."
    )
