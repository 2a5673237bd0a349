"""The background import through the real broker and web-side Celery worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import SampleSet, SampleSetStatus
from labeling.samples import text_reader
from tests.labeling.conftest import retry_locked, wait_for

pytestmark = pytest.mark.celery_worker


def _finished(pk: int) -> bool:
    return SampleSet.objects.get(pk=pk).status != SampleSetStatus.IMPORTING


def _upload_and_confirm(client: Any, name: str, data: bytes, **form: Any) -> tuple[int, str]:
    response = client.post(
        reverse("labeling:sampleset_import"), {"file": SimpleUploadedFile(name, data)}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    confirm = {"name": name, "max_chars": 20000, **form}
    response = client.post(response["Location"], confirm)
    assert response.status_code == 302, response.content.decode()[:2000]
    pk = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
    return pk, response["Location"]


@pytest.fixture
def worker_data_dir(settings: Any, celery_workers: Any) -> Path:
    """The folder the web-side worker reads uploads from (its ``COPE_DATA_DIR``)."""
    path = Path(celery_workers.env["COPE_DATA_DIR"])
    settings.DATA_DIR = path
    return path


@pytest.mark.django_db(transaction=True)
def test_worker_imports_the_file_and_the_page_shows_the_report(
    celery_workers: Any, worker_data_dir: Path, client: Any, author: Any
) -> None:
    client.force_login(author)
    rows = "".join(f"r{i},post number {i % 400},{i % 2}\n" for i in range(1, 1201))
    pk, url = _upload_and_confirm(
        client,
        "posts.csv",
        ("id,text,label\n" + rows).encode(),
        text_column="text",
        id_column="id",
        label_column="label",
    )
    wait_for(lambda: _finished(pk), timeout=60, what="the import", workers=celery_workers)
    s = retry_locked(lambda: SampleSet.objects.get(pk=pk))
    assert s.status == SampleSetStatus.READY, (s.error, celery_workers.log_tail())
    assert s.item_count == 1200 and s.rows_done == 1200 and s.progress_percent == 100
    assert retry_locked(lambda: s.items.count()) == 1200
    assert s.report["duplicates"]["items"] == 800
    page = client.get(url).content.decode()
    assert "Import report" in page and "1,200</strong> items imported" in page
    token = s.import_options["token"]
    assert not (worker_data_dir / "uploads" / f"{token}.data").exists()


@pytest.mark.django_db(transaction=True)
def test_worker_fails_a_damaged_file_and_keeps_nothing(
    celery_workers: Any,
    worker_data_dir: Path,
    client: Any,
    author: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client.force_login(author)
    # The damage lies past what the preview reads: the preview accepts, the import refuses.
    monkeypatch.setattr(text_reader, "HEAD_BYTES", 4096)
    rows = "".join(f"r{i},row {i}\n" for i in range(1, 3000))
    data = ("id,text\n" + rows + 'r3000,"never closed\nr3001,x\n').encode()
    pk, url = _upload_and_confirm(client, "late.csv", data, text_column="text", id_column="id")
    wait_for(lambda: _finished(pk), timeout=60, what="the import", workers=celery_workers)
    s = retry_locked(lambda: SampleSet.objects.get(pk=pk))
    assert s.status == SampleSetStatus.FAILED, celery_workers.log_tail()
    assert "Line 3001 opens a quoted field that is never closed" in s.error
    assert retry_locked(lambda: s.items.count()) == 0
    page = client.get(url).content.decode()
    assert "import failed" in page and "Line 3001 opens a quoted field" in page
