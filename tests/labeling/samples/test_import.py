"""Sample-set import: formats, the report, clear errors, and the upload → preview → confirm."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import Item, SampleSet, SampleSetStatus
from labeling.samples.errors import ImportFileError
from labeling.samples.preview import preview_upload
from labeling.samples.services import import_sample_set, run_import
from labeling.samples.uploads import load_upload, store_pasted, store_upload
from labeling.samples.values import content_hash
from tests.conftest import PASSWORD


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


def upload(name: str, data: bytes | str) -> Any:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return store_upload(SimpleUploadedFile(name, raw))


def do_import(up: Any, author: Any, **kwargs: Any) -> SampleSet:
    preview = preview_upload(up)
    options = {
        "text_column": preview.text_column,
        "id_column": preview.id_column,
        "label_column": preview.label_column,
        "delimiter": preview.delimiter or None,
    }
    options.update(kwargs)
    return import_sample_set(upload=up, name="set", by=author, **options)


CSV = (
    "id,text,label,lang\n"
    "a1,hello there,0,en\n"
    "a2,  hello   there ,1,en\n"  # duplicate once whitespace is normalised
    "a3,,0,en\n"  # empty: skipped
    "a1,you idiot,1,en\n"  # repeated id: renamed a1~2
    'a4,"multi\nline, with comma",maybe,fr\n'  # invalid label
)


def test_csv_import_reports_duplicates_empty_rows_renamed_ids_and_bad_labels(author: Any) -> None:
    up = upload("posts.csv", CSV)
    preview = preview_upload(up)
    assert preview.columns == ["id", "text", "label", "lang"]
    assert (preview.text_column, preview.id_column, preview.label_column) == ("text", "id", "label")
    assert len(preview.rows) == 5

    s = do_import(up, author)
    items = list(s.items.order_by("row_number"))
    assert [i.external_id for i in items] == ["a1", "a2", "a1~2", "a4"]
    assert [i.row_number for i in items] == [1, 2, 4, 5]
    assert items[3].text == "multi\nline, with comma"
    assert items[0].metadata == {"lang": "en"}
    assert [i.expected_label for i in items] == [0, 1, 1, None]
    assert items[0].content_hash == items[1].content_hash == content_hash("hello there")

    r = s.report
    assert s.item_count == 4 and r["rows_read"] == 5 and r["imported"] == 4
    assert r["empty_rows"] == {"count": 1, "rows": [3], "more": 0}
    assert r["duplicates"]["items"] == 1 and r["duplicates"]["examples"][0]["rows"] == [1, 2]
    assert r["renamed_ids"]["rows"] == [{"row": 4, "original": "a1", "new": "a1~2"}]
    assert r["invalid_labels"]["rows"] == [{"row": 5, "value": "maybe"}]


def test_ids_are_generated_from_row_numbers_without_an_id_column(author: Any) -> None:
    s = do_import(upload("x.csv", "body\nfirst\nsecond\n"), author, id_column="")
    assert list(s.items.values_list("external_id", flat=True)) == ["row-1", "row-2"]


def test_over_long_items_are_kept_and_reported(author: Any) -> None:
    s = do_import(upload("x.csv", f"text\nshort\n{'y' * 120}\n"), author, max_chars=100)
    assert s.item_count == 2
    assert s.report["over_long"]["rows"] == [{"row": 2, "id": "row-2", "chars": 120}]
    assert s.report["over_long"]["limit"] == 100


def test_jsonl_import_and_metadata(author: Any) -> None:
    lines = [
        {"id": 7, "content": "first post", "expected": 1, "source": {"site": "x"}},
        {"id": 8, "content": "second post", "expected": False},
    ]
    data = "\n".join(json.dumps(x) for x in lines) + "\n\n"
    s = do_import(upload("posts.jsonl", data), author)
    items = list(s.items.order_by("row_number"))
    assert [(i.external_id, i.text, i.expected_label) for i in items] == [
        ("7", "first post", 1),
        ("8", "second post", 0),
    ]
    assert items[0].metadata == {"source": {"site": "x"}}
    assert s.report["empty_rows"]["rows"] == [3]


def test_parquet_import(author: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"uid": ["p1", "p2", "p3"], "text": ["a", "b", None], "label": [1, 0, 1]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    s = do_import(upload("data.parquet", buf.getvalue()), author)
    assert list(s.items.values_list("external_id", "text", "expected_label")) == [
        ("p1", "a", 1),
        ("p2", "b", 0),
    ]
    assert s.report["empty_rows"]["rows"] == [3]


def test_pasted_lines_become_items(author: Any) -> None:
    up = store_pasted("one\n\n two \nthree\n")
    s = do_import(up, author)
    assert list(s.items.values_list("external_id", "text")) == [
        ("row-1", "one"),
        ("row-3", " two "),
        ("row-4", "three"),
    ]
    assert s.report["empty_rows"]["rows"] == [2]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("latin.csv", "text\ncaf\xe9\n".encode("latin-1"), "not UTF-8: byte 0xE9 on line 2"),
        ("utf16.csv", "text\nhello\n".encode("utf-16"), "UTF-16, not UTF-8"),
        ("bad.jsonl", '{"text": "ok"}\n{"text": oops}\n', "Line 2 is not valid JSON"),
        ("list.jsonl", '["text"]\n', "Line 1 is a JSON list, not an object"),
        ("fieldless.jsonl", "{}\n{}\n", "The JSON lines hold no fields"),
        ("fake.parquet", "id,text\n1,hello\n", "not a readable Parquet file"),
        ("empty.csv", "", "The file is empty"),
        ("header.csv", "id,text\n", "header row but no data rows"),
    ],
)
def test_bad_files_get_a_clear_message(name: str, data: Any, message: str) -> None:
    raw = data if isinstance(data, bytes) else data.encode()
    up = store_upload(SimpleUploadedFile(name, raw))
    with pytest.raises(ImportFileError, match=message):
        preview_upload(up)


def test_missing_column_is_named_with_the_available_ones(author: Any) -> None:
    up = upload("x.csv", "id,body\n1,hi\n")
    with pytest.raises(ImportFileError) as exc:
        import_sample_set(upload=up, name="x", by=author, text_column="text")
    assert "Column 'text' is not in the file. Available columns: 'id', 'body'." in str(exc.value)
    assert not SampleSet.objects.exists()


def test_unknown_extension_and_oversized_upload_are_refused(settings: Any) -> None:
    with pytest.raises(ImportFileError, match=r"\.xlsx cannot be imported"):
        upload("sheet.xlsx", "x")
    settings.COPE_MAX_UPLOAD_MB = 1
    with pytest.raises(ImportFileError, match="limit is 1 MB"):
        upload("big.csv", "text\n" + "x" * (1024 * 1024 + 10))


def test_all_empty_rows_import_nothing(author: Any) -> None:
    up = upload("x.csv", "id,text\n1,\n2,  \n")
    with pytest.raises(ImportFileError, match="all 2 rows have an empty text column"):
        import_sample_set(upload=up, name="x", by=author, text_column="text", id_column="id")
    assert not Item.objects.exists()


def test_upload_tokens_are_checked() -> None:
    with pytest.raises(ImportFileError, match="not valid"):
        load_upload("../../etc/passwd")
    with pytest.raises(ImportFileError, match="expired"):
        load_upload("0" * 32)


# Pages --------------------------------------------------------------------------------------


def test_upload_preview_confirm_and_report_pages(client: Any, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    response = client.post(
        reverse("labeling:sampleset_import"),
        {"file": SimpleUploadedFile("posts.csv", CSV.encode())},
    )
    assert response.status_code == 302
    preview_url = response["Location"]
    page = client.get(preview_url)
    assert page.status_code == 200
    assert b"multi\nline, with comma" in page.content and b"Detected" not in page.content
    response = client.post(
        preview_url,
        {
            "name": "Posts",
            "text_column": "text",
            "id_column": "id",
            "label_column": "label",
            "max_chars": 20000,
        },
    )
    s = SampleSet.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/samples/{s.pk}/")
    # The request only started the import; the task (run here in-process) does the work.
    assert s.status == SampleSetStatus.IMPORTING and not s.items.exists()
    page = client.get(response["Location"]).content.decode()
    assert 'id="import-status"' in page and "Importing in the background" in page
    assert run_import(sample_set_id=s.pk) == "ready"
    detail = client.get(response["Location"]).content.decode()
    assert "1</strong> empty row skipped: rows 3" in detail
    assert "<code>a1</code> → <code>a1~2</code>" in detail
    assert "1</strong> duplicate item" in detail
    # The upload is gone once imported.
    assert client.get(preview_url).status_code == 200
    assert "expired" in client.get(preview_url).content.decode()


def test_a_rejected_upload_is_refused_on_the_spot_and_deleted(
    client: Any, author: Any, data_dir: Path
) -> None:
    client.login(username=author.username, password=PASSWORD)
    response = client.post(
        reverse("labeling:sampleset_import"),
        {"file": SimpleUploadedFile("latin.csv", "text\ncaf\xe9\n".encode("latin-1"))},
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "not UTF-8" in page and "Re-save it as UTF-8" in page
    assert list((data_dir / "uploads").iterdir()) == []


def test_paste_form_and_content_is_escaped(client: Any, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    response = client.post(
        reverse("labeling:sampleset_import"), {"pasted": "<script>alert(1)</script>\nok"}
    )
    client.post(
        response["Location"],
        {"name": "Pasted", "text_column": "text", "id_column": "", "max_chars": 20000},
    )
    s = SampleSet.objects.get()
    run_import(sample_set_id=s.pk)
    page = client.get(reverse("labeling:sampleset_detail", args=[s.pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page


def test_permissions(client: Any, reviewer: Any, outsider: Any) -> None:
    client.login(username=reviewer.username, password=PASSWORD)
    assert client.get(reverse("labeling:sampleset_list")).status_code == 200
    assert client.get(reverse("labeling:sampleset_import")).status_code == 403
    client.login(username=outsider.username, password=PASSWORD)
    assert client.get(reverse("labeling:sampleset_list")).status_code == 403
    client.logout()
    assert client.get(reverse("labeling:sampleset_list")).status_code == 302


def test_cells_beyond_the_header_are_kept_and_reported(author: Any) -> None:
    data = (
        "id,text\n"
        "a1,fine row\n"
        "a2,one extra,surprise\n"
        "a3,trailing empties,,\n"  # nothing beyond the header but empty cells: not reported
        "a4,two extra,x,y\n"
    )
    s = do_import(upload("extra.csv", data), author)
    items = {i.external_id: i for i in s.items.all()}
    assert items["a2"].metadata == {"_extra_cells": ["surprise"]}
    assert items["a4"].metadata == {"_extra_cells": ["x", "y"]}
    assert items["a1"].metadata == {} and items["a3"].metadata == {}
    report = s.report["extra_cells"]
    assert report["count"] == 2 and report["rows"] == [
        {"row": 2, "cells": 1},
        {"row": 4, "cells": 2},
    ]
    assert report["message"].startswith("2 rows had more cells than the header")


def test_every_samples_page_marks_the_sample_sets_tab(client: Any, author: Any) -> None:
    """The views set no ``nav``: the context processor derives it from the URL's name."""
    client.login(username=author.username, password=PASSWORD)
    up = upload("posts.csv", CSV)
    s = do_import(up, author)
    tab = f'<a href="{reverse("labeling:sampleset_list")}" aria-current="page">Sample sets</a>'
    for url in (
        reverse("labeling:sampleset_list"),
        reverse("labeling:sampleset_import"),
        reverse("labeling:sampleset_preview", args=[up.token]),
        reverse("labeling:sampleset_detail", args=[s.pk]),
    ):
        page = client.get(url).content.decode()
        assert tab in page, url
        assert page.count('aria-current="page"') == 1, url
