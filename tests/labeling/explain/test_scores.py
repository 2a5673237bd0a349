"""The hand-written score writer (COPY on PostgreSQL, through a staging table when a row
conflicts; executemany elsewhere): every field written, and a (run, item, key) already stored
keeps its row."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.explain.scores import SCORE_FIELDS, ScoreRow, write_scores
from labeling.models import ExplainRun, ExplainScore, RunKind
from tests.labeling.conftest import make_sample_set, make_version

pytestmark = pytest.mark.django_db

FIELDS = ("key", "label", "p1", "margin", "delta", "flipped", "error")


def test_the_writers_column_list_is_every_score_field_but_the_key() -> None:
    """A field added to ``ExplainScore`` must be written too: the statements name their
    columns themselves."""
    fields = {f.name for f in ExplainScore._meta.concrete_fields if not f.primary_key}
    assert set(SCORE_FIELDS) == fields
    assert len(SCORE_FIELDS) == len(set(SCORE_FIELDS))
    assert ["run", *ScoreRow._fields] == [
        "run",
        *("item_id" if name == "item" else name for name in SCORE_FIELDS[1:]),
    ]


def _run(author: Any) -> tuple[ExplainRun, list[int]]:
    version = make_version(author)
    items = make_sample_set(author, ["one", "two"]).items.order_by("row_number")
    run = ExplainRun.objects.create(kind=RunKind.PROBE, version=version, attempt=1)
    return run, [i.pk for i in items]


def _stored(run: ExplainRun) -> list[tuple[Any, ...]]:
    rows = ExplainScore.objects.filter(run=run).order_by("item_id", "key")
    return list(rows.values_list("item_id", *FIELDS))


def test_scores_read_back_through_the_orm_and_a_second_write_keeps_the_first(
    author: Any,
) -> None:
    run, (one, two) = _run(author)
    first = [
        ScoreRow(one, "P", 1, 0.9, 2.5, None, False, ""),
        ScoreRow(one, "P-:scope/1", 0, 0.2, -1.0, -3.5, True, ""),
        ScoreRow(two, "P", None, None, None, None, False, "worker <b>failed</b>"),
    ]
    with CaptureQueriesContext(connection) as queries:
        write_scores(run.pk, first)
    assert _stored(run) == sorted(tuple(r) for r in first)
    # Without a conflict, PostgreSQL's rows go by COPY straight into the table.
    assert not [q for q in queries.captured_queries if "explain_score_in" in q["sql"]]
    # A later write of the same (run, item, key) with other figures, and a row repeated
    # within one write: the first row written stays, the new key is added, nothing fails.
    again = [
        ScoreRow(one, "P", 0, 0.1, -2.0, None, False, ""),
        ScoreRow(two, "OFF", 0, 0.3, -0.5, None, False, ""),
        ScoreRow(two, "OFF", 1, 0.8, 0.5, None, False, ""),
    ]
    write_scores(run.pk, again)
    assert _stored(run) == sorted([*(tuple(r) for r in first), tuple(again[1])])


def test_nothing_to_write_writes_nothing(author: Any) -> None:
    run, _ = _run(author)
    write_scores(run.pk, [])
    assert not ExplainScore.objects.filter(run=run).exists()
