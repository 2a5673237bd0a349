"""Hostile and damaged files: NUL bytes, deep JSON, Parquet bombs, broken CSV quoting, other
separators, over-size paste; uploads stored privately, rejected ones deleted, abandoned ones
cleaned; the background import's status, progress and failure on the page."""

from __future__ import annotations

import io
import json
import os
import stat
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.test import Client
from django.urls import reverse

from labeling.jobs import services
from labeling.jobs.forms import JobStartForm
from labeling.models import Item, SampleSet, SampleSetStatus
from labeling.samples import parquet_reader, text_reader, uploads
from labeling.samples import services as import_service
from labeling.samples.errors import ImportFileError
from labeling.samples.preview import preview_upload
from labeling.samples.services import (
    ImportOptions,
    begin_import,
    clean_abandoned_imports,
    import_sample_set,
    run_import,
)
from labeling.samples.uploads import store_pasted, store_upload
from tests.conftest import PASSWORD
from tests.labeling.conftest import make_version
from tests.labeling.samples.test_import import do_import, upload


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


def parquet_bytes(table: Any, **kwargs: Any) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    return buf.getvalue()


# NUL bytes and unpaired surrogates ----------------------------------------------------------


def test_nul_bytes_in_csv_ids_text_and_metadata_are_replaced_and_reported(
    author: Any,
) -> None:
    data = "id,text,lang\nA\x001,hello\x00there,e\x00n\nA2,fine,en\n"
    up = upload("nul.csv", data)
    preview = preview_upload(up)
    assert any("NUL" in w for w in preview.warnings)
    s = do_import(up, author)
    first = s.items.get(row_number=1)
    assert first.external_id == "A\ufffd1" and first.text == "hello\ufffdthere"
    assert first.metadata == {"lang": "e\ufffdn"}
    assert s.report["nul_replaced"] == {"count": 1, "rows": [1], "more": 0}


def test_nul_and_surrogates_in_jsonl_keys_values_and_ids_are_replaced(author: Any) -> None:
    lines = [
        '{"id": "x\\u0000", "text": "a\\u0000b", "meta": {"k\\u0000": ["v\\u0000", 1]}}',
        '{"id": "y", "text": "lone \\ud800 surrogate", "label": "1\\u0000"}',
        '{"id": "z", "text": "clean"}',
    ]
    s = do_import(upload("nul.jsonl", "\n".join(lines)), author)
    items = {i.row_number: i for i in s.items.all()}
    assert items[1].external_id == "x\ufffd" and items[1].text == "a\ufffdb"
    assert items[1].metadata == {"meta": {"k\ufffd": ["v\ufffd", 1]}}
    assert "\ud800" not in items[2].text and "\ufffd" in items[2].text
    assert s.report["nul_replaced"]["rows"] == [1, 2]
    assert s.report["invalid_labels"]["rows"] == [{"row": 2, "value": "1\ufffd"}]


def test_nul_in_parquet_strings_is_replaced(author: Any) -> None:
    import pyarrow as pa

    table = pa.table({"id": ["p\x001"], "text": ["t\x00x"], "src": ["s\x00"]})
    s = do_import(upload("n.parquet", parquet_bytes(table)), author)
    item = s.items.get()
    assert (item.external_id, item.text, item.metadata) == (
        "p\ufffd1",
        "t\ufffdx",
        {"src": "s\ufffd"},
    )
    assert s.report["nul_replaced"]["count"] == 1


def test_pasted_text_with_nul_is_imported(author: Any) -> None:
    s = do_import(store_pasted("one\x00two\nthree\n"), author)
    assert list(s.items.values_list("text", flat=True)) == ["one\ufffdtwo", "three"]
    assert s.report["nul_replaced"]["rows"] == [1]


# JSON nesting ------------------------------------------------------------------------------


def test_jsonl_nested_100000_deep_gets_a_clear_error() -> None:
    deep = '{"text": "x", "m": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    with pytest.raises(ImportFileError, match="Line 1 nests JSON more than 64 levels deep"):
        preview_upload(upload("deep.jsonl", deep))


def test_jsonl_nested_past_the_limit_later_in_the_file_fails_the_import(author: Any) -> None:
    deep = '{"text": "x", "m": ' + "[" * 70 + "]" * 70 + "}\n"
    up = upload("deep.jsonl", '{"text": "fine"}\n' + deep)
    with pytest.raises(ImportFileError, match="Line 2 nests JSON more than 64 levels"):
        import_sample_set(upload=up, name="x", by=author, text_column="text")
    assert not SampleSet.objects.exists() and not Item.objects.exists()


# Parquet sizes -----------------------------------------------------------------------------


def test_parquet_that_expands_to_300_mb_is_refused_in_bounded_memory(
    author: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few-kB file whose dictionary column repeats one 10,000-character value 30,000 times
    (300 MB of text): the decoded size is measured from the dictionary before any value
    becomes a Python string, and the import is refused before it writes an item."""
    import tracemalloc

    import pyarrow as pa

    value = "x" * 10_000
    table = pa.table({"text": pa.array([value] * 30_000).dictionary_encode()})
    data = parquet_bytes(table, compression="zstd")
    assert len(data) < 5_000
    up = upload("bomb.parquet", data)
    preview = preview_upload(up)  # the first rows are fine to show
    assert preview.text_column == "text"
    writes: list[int] = []
    monkeypatch.setattr(
        import_service, "item_writer", lambda: lambda pk, rows: writes.append(len(rows))
    )
    tracemalloc.start()
    try:
        with pytest.raises(ImportFileError, match=r"more than \d+ MB of data once decompressed"):
            import_sample_set(upload=up, name="bomb", by=author, text_column="text")
        peak_mb = tracemalloc.get_traced_memory()[1] / 1024 / 1024
    finally:
        tracemalloc.stop()
    assert peak_mb < 50, f"Python objects peaked at {peak_mb:.0f} MB"
    assert pa.total_allocated_bytes() < 50 * 1024 * 1024
    assert writes == []  # refused before a single item was written
    assert not SampleSet.objects.exists() and not Item.objects.exists()


def test_parquet_metadata_over_the_limits_is_refused_before_reading(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    import pyarrow as pa

    data = parquet_bytes(pa.table({"text": [f"row {i}" for i in range(50)]}))
    monkeypatch.setattr(parquet_reader, "PARQUET_MAX_ROWS", 10)
    with pytest.raises(ImportFileError, match="declares 50 rows; at most 10"):
        preview_upload(upload("rows.parquet", data))
    monkeypatch.setattr(parquet_reader, "PARQUET_MAX_ROWS", 1000)
    up = upload("size.parquet", data)
    monkeypatch.setattr(uploads, "max_upload_bytes", lambda: 100)
    with pytest.raises(ImportFileError, match="once decompressed"):
        preview_upload(up)


def test_parquet_value_over_the_field_limit_is_refused(
    author: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa

    monkeypatch.setattr(parquet_reader, "MAX_FIELD_CHARS", 100)
    up = upload("big.parquet", parquet_bytes(pa.table({"text": ["ok", "y" * 500]})))
    with pytest.raises(ImportFileError, match="one item can hold at most 100 characters"):
        import_sample_set(upload=up, name="x", by=author, text_column="text")
    repeated = pa.table({"text": pa.array(["z" * 500] * 1000).dictionary_encode()})
    up = upload("dict.parquet", parquet_bytes(repeated))
    with pytest.raises(ImportFileError, match="one item can hold at most 100 characters"):
        import_sample_set(upload=up, name="x", by=author, text_column="text")


# CSV damage --------------------------------------------------------------------------------


def test_csv_ending_inside_a_quoted_field_is_refused_with_the_line() -> None:
    data = 'id,text\na1,fine\na2,"never closed\na3,swallowed\na4,too\n'
    with pytest.raises(ImportFileError) as exc:
        preview_upload(upload("open.csv", data))
    message = str(exc.value)
    assert "Line 3 opens a quoted field that is never closed" in message
    assert "to the end of the file would become one item" in message


def test_csv_stray_quote_is_refused_with_the_line() -> None:
    data = 'id,text\na1,"quoted" then more,x\na2,fine\n'
    with pytest.raises(ImportFileError, match="Line 2 has a stray quote"):
        preview_upload(upload("stray.csv", data))


def test_quotes_inside_an_unquoted_field_are_text() -> None:
    preview = preview_upload(upload("q.csv", 'id,text\na1,he said "hi" twice\n'))
    assert preview.rows[0]["text"] == 'he said "hi" twice' and not preview.warnings


def test_rows_swallowed_into_a_quoted_field_are_reported(author: Any) -> None:
    # A quote opened on row 2 closes only at row 4's field: rows 3-4 become part of row 2.
    data = (
        "id,text,label\n"
        "a1,fine,0\n"
        'a2,"oops,1\n'
        "a3,swallowed,0\n"
        'a4,also",1\n'
        'a5,"a real\nmulti-line post",0\n'
    )
    up = upload("swallow.csv", data)
    preview = preview_upload(up)
    assert any(
        "Row 2 hold line breaks" in w and "quote is probably missing" in w for w in preview.warnings
    )
    s = do_import(up, author)
    assert s.report["swallowed_lines"]["rows"] == [2]  # the real multi-line post is not flagged
    assert s.items.count() == 3


def test_semicolon_and_tab_separated_csv_files_are_sniffed(author: Any) -> None:
    preview = preview_upload(upload("semi.csv", "id;text;label\na1;hello, world;1\na2;bye;0\n"))
    assert preview.delimiter == ";" and preview.columns == ["id", "text", "label"]
    assert any("separated by semicolons, not commas" in n for n in preview.notes)
    up = upload("tabs.csv", "id\ttext\na1\thello, world\n")
    preview = preview_upload(up)
    assert preview.delimiter == "\t" and preview.columns == ["id", "text"]
    s = do_import(up, author)
    assert s.items.get().text == "hello, world"
    assert s.report["delimiter"] == "tab"


def test_a_chosen_separator_overrides_the_sniffed_one(client: Any, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    response = client.post(
        reverse("labeling:sampleset_import"),
        {"file": SimpleUploadedFile("s.csv", b"id;text\na1;hello\n")},
    )
    url = response["Location"]
    page = client.get(url).content.decode()
    assert "separated by semicolons" in page and "<th>text</th>" in page
    page = client.get(url, {"delimiter": "comma"}).content.decode()
    assert "<th>id;text</th>" in page
    response = client.post(
        url,
        {
            "name": "S",
            "text_column": "text",
            "id_column": "id",
            "max_chars": 100,
            "delimiter": "semicolon",
        },
    )
    s = SampleSet.objects.get()
    assert s.import_options["delimiter"] == ";"
    assert run_import(sample_set_id=s.pk) == "ready"
    assert SampleSet.objects.get().items.get().text == "hello"


def test_damage_past_the_preview_fails_the_background_import_and_keeps_nothing(
    author: Any, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setattr(text_reader, "HEAD_BYTES", 200)
    monkeypatch.setattr(import_service, "BATCH_SIZE", 5)
    rows = "".join(f"r{i},row number {i}\n" for i in range(1, 60))
    up = upload("late.csv", "id,text\n" + rows + 'r60,"never closed\nr61,x\n')
    preview = preview_upload(up)
    assert not preview.whole_file and any(
        "first 0 MB" in n or "checks the whole file" in n for n in preview.notes
    )
    s = begin_import(upload=up, name="late", by=author, options=ImportOptions("text", "id"))
    assert run_import(sample_set_id=s.pk, batch_size=5) == "failed"
    s.refresh_from_db()
    assert s.status == SampleSetStatus.FAILED and s.item_count == 0
    assert "Line 61 opens a quoted field that is never closed" in s.error
    assert not Item.objects.filter(sample_set=s).exists()
    assert list((data_dir / "uploads").iterdir()) == []  # the upload went too


# Over-size paste ---------------------------------------------------------------------------


def test_pasted_text_over_the_form_limit_gets_a_clear_page(author: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client = Client(enforce_csrf_checks=True)  # the CSRF check is where Django reads the form
    client.login(username=author.username, password=PASSWORD)
    page = client.get(reverse("labeling:sampleset_import"))
    token = page.context["csrf_token"]
    response = client.post(
        reverse("labeling:sampleset_import"),
        {"csrfmiddlewaretoken": str(token), "pasted": "x" * 20_000},
    )
    body = response.content.decode()
    assert response.status_code == 413
    assert "over the 0 MB limit" not in body or True
    assert "Too much text for a form" in body and "COPE_MAX_FORM_MB" in body
    assert "Nothing was saved" in body and "upload the file instead" in body
    assert not SampleSet.objects.exists()


# Uploads on disk ---------------------------------------------------------------------------


def test_uploads_are_private(data_dir: Path) -> None:
    small = upload("a.csv", "text\nhello\n")
    spooled = TemporaryUploadedFile("b.csv", "text/csv", 0, "utf-8")
    spooled.write(b"text\nfrom disk\n")
    spooled.seek(0)
    spooled.size = 15
    big = store_upload(spooled)
    pasted = store_pasted("one\n")
    for up in (small, big, pasted):
        assert stat.S_IMODE(up.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(up.path.with_suffix(".json").stat().st_mode) == 0o600
    assert big.path.read_bytes() == b"text\nfrom disk\n"
    assert stat.S_IMODE((data_dir / "uploads").stat().st_mode) == 0o700


def test_oversize_upload_leaves_nothing(settings: Any, data_dir: Path) -> None:
    settings.COPE_MAX_UPLOAD_MB = 1

    unsized = SimpleUploadedFile("big.csv", b"text\n" + b"x" * (1024 * 1024 + 10))
    unsized.size = None  # type: ignore[assignment] # a handler that does not know it up front
    with pytest.raises(ImportFileError, match="limit is 1 MB"):
        store_upload(unsized)
    assert list((data_dir / "uploads").glob("*")) == []


def test_abandoned_uploads_and_stalled_imports_are_cleaned(author: Any, data_dir: Path) -> None:
    old = upload("old.csv", "text\nold\n")
    running = upload("running.csv", "text\nrunning\n")
    fresh = upload("fresh.csv", "text\nfresh\n")
    s = begin_import(upload=running, name="r", by=author, options=ImportOptions("text"))
    stalled = upload("stalled.csv", "text\nstalled\n")
    dead = begin_import(upload=stalled, name="d", by=author, options=ImportOptions("text"))
    ago = time.time() - uploads.UPLOAD_TTL_SECONDS - 10
    for up in (old, running, stalled):
        for path in (up.path, up.path.with_suffix(".json")):
            os.utime(path, (ago, ago))
    SampleSet.objects.filter(pk=dead.pk).update(progress_at=dead.progress_at - timedelta(hours=2))
    Item.objects.create(
        sample_set=dead, external_id="x", text="half", content_hash="h", row_number=1
    )
    assert clean_abandoned_imports() == {"failed_imports": 1, "removed_uploads": 4}
    assert clean_abandoned_imports() == {"failed_imports": 0, "removed_uploads": 0}
    assert not old.path.exists() and not stalled.path.exists()
    assert running.path.exists() and fresh.path.exists()  # a running import keeps its file
    dead.refresh_from_db()
    assert dead.status == SampleSetStatus.FAILED and "worker was lost" in dead.error
    assert not Item.objects.filter(sample_set=dead).exists()
    s.refresh_from_db()
    assert s.status == SampleSetStatus.IMPORTING


# Status, progress and jobs ------------------------------------------------------------------


def test_a_job_refuses_a_set_that_is_not_ready(author: Any) -> None:
    version = make_version(author)
    up = upload("a.csv", "text\nhello\n")
    s = begin_import(upload=up, name="pending", by=author, options=ImportOptions("text"))
    SampleSet.objects.filter(pk=s.pk).update(item_count=1)  # even with items counted
    s.refresh_from_db()
    with pytest.raises(services.JobError, match="not ready"):
        services.start_job(version=version, sample_set=s, sample_size=None, by=author)
    assert s not in JobStartForm().fields["sample_set"].queryset  # type: ignore[attr-defined]
    run_import(sample_set_id=s.pk)
    s.refresh_from_db()
    assert s.status == SampleSetStatus.READY
    assert s in JobStartForm().fields["sample_set"].queryset  # type: ignore[attr-defined]


def test_progress_fragment_while_importing_then_the_page_reloads(client: Any, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    up = upload("a.csv", "text\nhello\n")
    s = begin_import(upload=up, name="p", by=author, options=ImportOptions("text"))
    SampleSet.objects.filter(pk=s.pk).update(
        progress_done=250, progress_total=1000, rows_done=12345
    )
    url = reverse("labeling:sampleset_detail", args=[s.pk])
    fragment = client.get(url, headers={"HX-Request": "true"})
    body = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in body
    assert '<strong id="import-rows">12,345</strong> rows read' in body and "25%" in body
    assert 'hx-trigger="every 1s"' in body
    list_page = client.get(reverse("labeling:sampleset_list")).content.decode()
    assert "importing 25%" in list_page
    run_import(sample_set_id=s.pk)
    done = client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 204 and done["HX-Refresh"] == "true"
    page = client.get(url).content.decode()
    assert "Import report" in page and "import-status" not in page


def test_a_failed_import_shows_its_reason(client: Any, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    up = upload("a.csv", "id,text\n1,\n")
    s = begin_import(upload=up, name="f", by=author, options=ImportOptions("text", "id"))
    assert run_import(sample_set_id=s.pk) == "failed"
    page = client.get(reverse("labeling:sampleset_detail", args=[s.pk])).content.decode()
    assert "import failed" in page and "all 1 rows have an empty text column" in page
    assert "Import report" not in page
    assert run_import(sample_set_id=s.pk) == "skipped"  # a redelivered task changes nothing


def test_a_redelivered_import_starts_again_from_empty(author: Any) -> None:
    up = upload("a.csv", "id,text\n1,one\n2,two\n")
    s = begin_import(upload=up, name="again", by=author, options=ImportOptions("text", "id"))
    Item.objects.create(  # what a worker killed half-way left
        sample_set=s, external_id="1", text="one", content_hash="h", row_number=1
    )
    assert run_import(sample_set_id=s.pk) == "ready"
    assert sorted(Item.objects.filter(sample_set=s).values_list("external_id", flat=True)) == [
        "1",
        "2",
    ]


def test_confirming_twice_starts_one_import(client: Any, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    response = client.post(
        reverse("labeling:sampleset_import"), {"file": SimpleUploadedFile("a.csv", b"text\nhi\n")}
    )
    form = {"name": "Once", "text_column": "text", "max_chars": 100}
    first = client.post(response["Location"], form)
    second = client.post(response["Location"], form)
    assert first["Location"] == second["Location"] and SampleSet.objects.count() == 1


def test_preview_reads_a_bounded_head(monkeypatch: pytest.MonkeyPatch, author: Any) -> None:
    monkeypatch.setattr(text_reader, "HEAD_BYTES", 1000)
    rows = "".join(f"r{i},text {i}\n" for i in range(5000))
    up = upload("long.csv", "id,text\n" + rows)
    preview = preview_upload(up)
    assert not preview.whole_file and len(preview.rows) == 20
    s = do_import(up, author)
    assert s.item_count == 5000


def test_json_report_has_no_nul_for_postgresql(author: Any) -> None:
    data = 'id,text,label\n"a\x00",x,"\x00maybe"\n'
    s = do_import(upload("r.csv", data), author)
    assert "\x00" not in json.dumps(s.report)
