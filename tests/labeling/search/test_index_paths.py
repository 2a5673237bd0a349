"""The item content index is current on every path that writes items: the import's writer
(``COPY`` on PostgreSQL, ``executemany`` on SQLite), ``save()``, an update, the admin's delete
of a sample set, the ORM's cascade and the raw delete of a failed import. On SQLite these are
the migration's triggers; on PostgreSQL the stored generated column."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from labeling.models import Item, SampleSet
from labeling.samples.writer import ItemRow, delete_items, item_writer
from labeling.search.content import matching_ids
from labeling.search.query import parse
from tests.labeling.conftest import make_sample_set

pytestmark = pytest.mark.django_db


def _ids(text: str, **kw: Any) -> list[int]:
    return matching_ids(parse(text), limit=100, **kw)


def _rows(texts: list[str]) -> list[ItemRow]:
    return [ItemRow(f"r{i}", t, f"h{i}", {}, None, i) for i, t in enumerate(texts, start=1)]


def test_the_import_writer_indexes_what_it_writes(author: Any) -> None:
    sample_set = SampleSet.objects.create(name="import", created_by=author)
    item_writer()(sample_set.pk, _rows(["a zebra crossing", "a quiet street", "zebras run"]))
    found = list(Item.objects.filter(pk__in=_ids("zebra")).values_list("external_id", flat=True))
    assert found == ["r1"]
    assert len(_ids("zebra*")) == 2

    delete_items(sample_set.pk)
    assert _ids("zebra*") == []


def test_save_and_update_keep_the_index_current(author: Any) -> None:
    sample_set = make_sample_set(author, ["the old wording"])
    item = sample_set.items.get()
    assert _ids("wording") == [item.pk]
    item.text = "the new phrasing"
    item.save()
    assert _ids("wording") == [] and _ids("phrasing") == [item.pk]
    Item.objects.filter(pk=item.pk).update(text="bulk updated text")
    assert _ids("phrasing") == [] and _ids("bulk") == [item.pk]


def test_deleting_a_sample_set_removes_its_items_from_the_index(author: Any) -> None:
    gone = make_sample_set(author, ["walrus one", "walrus two"], name="gone")
    kept = make_sample_set(author, ["walrus three"], name="kept")
    gone.delete()
    assert _ids("walrus") == list(kept.items.values_list("pk", flat=True))


def test_the_admin_delete_of_a_sample_set_removes_its_items_from_the_index(author: Any) -> None:
    sample_set = make_sample_set(author, ["a pelican", "two pelicans"])
    admin_client = Client()
    admin_client.force_login(
        get_user_model().objects.create_superuser("root", "root@example.com", "pw-unused-here")
    )
    url = reverse("admin:labeling_sampleset_delete", args=[sample_set.pk])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not SampleSet.objects.filter(pk=sample_set.pk).exists()
    assert _ids("pelican*") == []


def test_search_within_a_set_and_keyset_pages(author: Any) -> None:
    first = make_sample_set(author, [f"otter number {i}" for i in range(5)], name="one")
    second = make_sample_set(author, ["otter elsewhere", "no match"], name="two")
    in_first = list(first.items.order_by("pk").values_list("pk", flat=True))
    assert _ids("otter", sample_set_id=first.pk) == in_first
    assert _ids("otter", sample_set_id=second.pk) == [second.items.order_by("pk")[0].pk]
    # A set id is not a word of the text: searching a number finds only texts holding it.
    assert _ids(str(first.pk)) == [
        i.pk for i in Item.objects.order_by("pk") if str(first.pk) in i.text.split()
    ]
    page = matching_ids(parse("otter"), limit=2)
    after = matching_ids(parse("otter"), after=page[-1], limit=10)
    assert page + after == in_first + [second.items.order_by("pk")[0].pk]


def test_phrases_need_the_words_in_order(author: Any) -> None:
    sample_set = make_sample_set(author, ["go home now", "now go home", "home go"])
    ids = list(sample_set.items.order_by("pk").values_list("pk", flat=True))
    assert _ids('"go home"') == ids[:2]
    assert _ids("home go") == ids
