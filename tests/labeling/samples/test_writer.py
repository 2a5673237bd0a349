"""The hand-written item writer (COPY on PostgreSQL, executemany elsewhere) and its delete."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from labeling.models import Item, SampleSet
from labeling.samples.writer import ITEM_FIELDS, ItemRow, delete_items, item_writer


def test_the_writers_column_list_is_every_item_field_but_the_key() -> None:
    """A field added to ``Item`` must be written by the import too (or have a default the
    statement can leave to the database): the COPY / INSERT names its columns itself."""
    fields = {f.name for f in Item._meta.concrete_fields if not f.primary_key}
    assert set(ITEM_FIELDS) == fields
    assert len(ITEM_FIELDS) == len(set(ITEM_FIELDS))
    assert list(ItemRow._fields) == [name for name in ITEM_FIELDS if name != "sample_set"]


def _set(author: Any, name: str) -> SampleSet:
    return SampleSet.objects.create(name=name, source_format="csv", created_by=author)


def test_written_rows_read_back_through_the_orm_and_delete_takes_one_set(author: Any) -> None:
    kept, removed = _set(author, "kept"), _set(author, "removed")
    rows = [
        ItemRow("a", "first text", "h1", {"lang": "en", "n": [1, 2]}, 1, 1),
        ItemRow("b", "second text", "h2", {}, None, 2),
    ]
    write = item_writer()
    with transaction.atomic():
        write(kept.pk, rows)
        write(removed.pk, rows)
    item = Item.objects.get(sample_set=kept, external_id="a")
    assert (item.text, item.content_hash, item.metadata, item.expected_label, item.row_number) == (
        "first text",
        "h1",
        {"lang": "en", "n": [1, 2]},
        1,
        1,
    )
    assert Item.objects.get(sample_set=kept, external_id="b").expected_label is None
    delete_items(removed.pk)
    assert not Item.objects.filter(sample_set=removed).exists()
    assert Item.objects.filter(sample_set=kept).count() == 2
