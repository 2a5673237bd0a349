"""Property-based tests of every reader: whatever the bytes, the preview and the import end in
a sample set with a report or in a clear ``ImportFileError`` — never another exception, never
a string the database refuses (PostgreSQL rejects NUL in text and in JSON)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from labeling.models import Item
from labeling.samples.errors import ImportFileError
from labeling.samples.preview import preview_upload
from labeling.samples.services import import_sample_set
from labeling.samples.uploads import StoredUpload, store_pasted, store_upload

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


def _import_or_refuse(up: StoredUpload, author: Any) -> None:
    """The property: a report or a clear error, and nothing the database could not store."""
    try:
        preview = preview_upload(up)
    except ImportFileError as exc:
        assert str(exc)
        event("refused by the preview")
        return
    assert preview.columns
    text = preview.text_column or preview.columns[0]
    label = preview.label_column if preview.label_column != text else ""
    ident = preview.id_column if preview.id_column != text else ""
    try:
        s = import_sample_set(
            upload=up,
            name="fuzz",
            by=author,
            text_column=text,
            id_column=ident,
            label_column=label,
            delimiter=preview.delimiter or None,
        )
    except ImportFileError as exc:
        assert str(exc)
        event("refused by the import")
        return
    event("imported")
    assert s.item_count == s.items.count() == s.report["imported"] > 0
    for item in Item.objects.filter(sample_set=s).iterator():
        for value in (item.text, item.external_id, json.dumps(item.metadata)):
            assert "\x00" not in value
            value.encode("utf-8")  # no unpaired surrogate
    assert "\\u0000" not in json.dumps(s.report)
    s.items.all().delete()
    s.delete()


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # unpaired surrogates become invalid UTF-8


_CSV_PIECES = [
    ",", ";", "\t", "|", '"', '""', "\n", "\r\n", "\r", "\x00", "a", "b c", "é", "💥",
    "id", "text", "label", "1", "0", "yes", " ", "\ud800", "\ufeff",
]  # fmt: skip
_csv_text = st.builds(
    lambda header, pieces: (header or "") + "".join(pieces),
    st.sampled_from([None, "id,text,label\n", "id;text\n", "text\n", '"te""xt",id\n']),
    st.lists(st.sampled_from(_CSV_PIECES), max_size=80),
)


@FUZZ
@given(
    data=st.one_of(_csv_text.map(_encode), st.binary(max_size=300)),
    name=st.sampled_from(["f.csv", "f.tsv"]),
)
def test_csv_reader_never_fails_unclearly(db: Any, author: Any, data: bytes, name: str) -> None:
    _import_or_refuse(store_upload(SimpleUploadedFile(name, data)), author)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters(codec=None), max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_json_objects = st.fixed_dictionaries(
    {"text": _json_values},
    optional={"id": _json_values, "label": _json_values, "meta": _json_values},
)
_jsonl_docs = st.builds(
    lambda objects, ascii_: "\n".join(json.dumps(o, ensure_ascii=ascii_) for o in objects),
    st.lists(_json_objects, min_size=1, max_size=8),
    st.booleans(),
)
_JSON_PIECES = [
    "{", "}", "[", "]", '"text"', '"id"', ":", ",", '"\\u0000"', '"\\ud800"', "1e999",
    "NaN", "null", '"x"', "\n", "\x00", "[" * 200, "]" * 200, "tru", '"\\', " ",
]  # fmt: skip
_jsonl_soup = st.lists(st.sampled_from(_JSON_PIECES), max_size=60).map("".join)


@FUZZ
@given(data=st.one_of(_jsonl_docs.map(_encode), _jsonl_soup.map(_encode), st.binary(max_size=300)))
def test_jsonl_reader_never_fails_unclearly(db: Any, author: Any, data: bytes) -> None:
    _import_or_refuse(store_upload(SimpleUploadedFile("f.jsonl", data)), author)


def _parquet(rows: list[tuple[Any, Any, Any]], dictionary: bool) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts, ids, labels = zip(*rows, strict=True) if rows else ((), (), ())
    table = pa.table(
        {"text": pa.array(list(texts), pa.string()), "id": list(ids), "label": list(labels)}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, use_dictionary=dictionary)
    return buf.getvalue()


_parquet_rows = st.lists(
    st.tuples(
        st.none() | st.text(max_size=30),
        st.none() | st.text(max_size=10),
        st.none() | st.integers(-2, 3),
    ),
    max_size=30,
)


@FUZZ
@given(rows=_parquet_rows, dictionary=st.booleans(), data=st.data())
def test_parquet_reader_never_fails_unclearly(
    db: Any, author: Any, rows: Any, dictionary: bool, data: Any
) -> None:
    raw = bytearray(_parquet(rows, dictionary))
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=4)
    )
    for at, value in flips:  # damage the file here and there
        raw[at] = value
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    _import_or_refuse(store_upload(SimpleUploadedFile("f.parquet", bytes(raw))), author)


@FUZZ
@given(data=st.binary(max_size=400))
def test_parquet_reader_on_any_bytes(db: Any, author: Any, data: bytes) -> None:
    _import_or_refuse(store_upload(SimpleUploadedFile("f.parquet", b"PAR1" + data)), author)


@FUZZ
@given(text=st.text(alphabet=st.characters(codec=None), max_size=200))
def test_pasted_lines_never_fail_unclearly(db: Any, author: Any, text: str) -> None:
    _import_or_refuse(store_pasted(text), author)
