"""PostgreSQL picks its plan per search from ANALYZE's word statistics (``_postgresql_ids``):
a walk along the ids for common words, the GIN index for the rest (first over one stretch of
ids when it expects many matches), and the index after a walk that came up short. Every plan
returns the same ids, in order, page after page."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from labeling.search import content
from labeling.search.content import matching_ids
from labeling.search.query import parse
from tests.labeling.conftest import make_sample_set

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner"),
]


def _texts(n: int, tag: str) -> list[str]:
    # "common" in every other item, "sometimes" in every 40th, "once" in one.
    return [
        " ".join(
            ["filler", tag, f"w{i}"]
            + (["common"] if i % 2 == 0 else [])
            + (["sometimes"] if i % 40 == 0 else [])
            + (["once"] if i == n - 3 else [])
        )
        for i in range(n)
    ]


def _all_pages(q: str, sample_set_id: int | None, limit: int) -> list[int]:
    ids: list[int] = []
    after = None
    while True:
        page = matching_ids(parse(q), sample_set_id=sample_set_id, after=after, limit=limit)
        ids += page
        if len(page) < limit:
            return ids
        after = page[-1]


@pytest.mark.parametrize(
    ("walk", "walk_more", "bitmap_rows", "stretch"),
    [
        (10_000, 30_000, 2_000, 150_000),
        (7, 30_000, 2_000, 150_000),
        (10_000, 30_000, 0, 1),
        (7, 30_000, 0, 2),
        (7, 0, 0, 12),
        (None, 0, 0, 20),  # no walks: stretches of the index only
    ],
)
def test_every_plan_returns_the_matches_in_id_order(
    author: Any,
    monkeypatch: pytest.MonkeyPatch,
    walk: int | None,
    walk_more: int,
    bitmap_rows: int,
    stretch: int,
) -> None:
    first = make_sample_set(author, _texts(300, "alpha"), name="a")
    second = make_sample_set(author, _texts(200, "beta"), name="b")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labeling_item")
    assert content._share(connection.cursor(), parse("common")) > content.COMMON_SHARE
    assert content._share(connection.cursor(), parse("once")) < content.COMMON_SHARE
    if walk is None:
        monkeypatch.setattr(content, "COMMON_SHARE", 1.0)
        monkeypatch.setattr(content, "COMMON_SHARE_PHRASE", 1.0)
    else:
        monkeypatch.setattr(content, "WALK", walk)
    monkeypatch.setattr(content, "WALK_MORE", walk_more)
    monkeypatch.setattr(content, "WALK_MOST", walk_more)
    monkeypatch.setattr(content, "BITMAP_ROWS", bitmap_rows)
    monkeypatch.setattr(content, "STRETCH", stretch)
    items = list(first.items.order_by("pk")) + list(second.items.order_by("pk"))
    queries = ["common", "sometimes", "once", "comm*", "filler common", "w1*", "filler once"]
    # Phrases: rare, common, and common words never adjacent (the index's plan to the end).
    queries += ['"beta w10"', '"common sometimes"', '"filler common"', '"alpha w1"']
    for q in queries:
        words = parse(q).words
        for set_id in (None, first.pk, second.pk):
            expected = [
                i.pk
                for i in items
                if (set_id is None or i.sample_set_id == set_id)
                and all(
                    any(t == w or (q.endswith("*") and t.startswith(w)) for t in i.text.split())
                    for w in words
                )
            ]
            if q.startswith('"'):
                phrase = " ".join(words)
                expected = [i for i in expected if " " + phrase + " " in _text_of(items, i)]
            assert _all_pages(q, set_id, 9) == expected, (q, set_id)


def _text_of(items: list[Any], pk: int) -> str:
    return " " + next(i.text for i in items if i.pk == pk) + " "
