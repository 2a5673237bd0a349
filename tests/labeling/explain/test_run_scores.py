"""The scores of every run but attribution: one row of packed columns per chunk
(``labeling.run_scores``), read back with the same figures, the chunk's own items only, the first
answer per (item, key), and beside the rows that runs recorded before the columns."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.db import connection

from labeling.models import ChunkScores, ExplainChunk, ExplainRun, ExplainScore, RunKind
from labeling.run_scores import (
    StoredScore,
    decode,
    encode,
    pack_scores,
    run_labels,
    run_scores,
    write_chunk_scores,
)
from tests.labeling.conftest import make_sample_set, make_version
from worker.contract import VariantOutcome

pytestmark = pytest.mark.django_db


def _run(author: Any, texts: list[str]) -> tuple[ExplainRun, list[ExplainChunk], list[int]]:
    version = make_version(author)
    ids = [i.pk for i in make_sample_set(author, texts).items.order_by("row_number")]
    half = len(ids) // 2
    run = ExplainRun.objects.create(kind=RunKind.PROBE, version=version, attempt=1)
    chunks = [
        ExplainChunk.objects.create(run=run, index=n, item_ids=part)
        for n, part in enumerate([ids[:half], ids[half:]])
    ]
    return run, chunks, ids


def test_a_chunks_columns_read_back_every_figure_of_its_own_items(author: Any) -> None:
    run, (first, second), (one, two, three, four) = _run(author, ["a", "b", "c", "d"])
    outcomes = [
        VariantOutcome("P", one, 1, 0.9, 2.2, ""),
        VariantOutcome("P", two, None, None, None, "worker <b>failed</b>"),
        VariantOutcome("OFF", one, 0, 0.1, -2.2, ""),
        VariantOutcome("OFF", two, 0, math.nan, math.inf, ""),
        VariantOutcome("P", one, 0, 0.2, -1.0, ""),  # a second answer for (one, P): ignored
        VariantOutcome("P", three, 1, 0.7, 0.8, ""),  # not this chunk's item: ignored
    ]
    count = write_chunk_scores(run.pk, first.pk, pack_scores({one, two}, outcomes))
    assert count == 4 == ChunkScores.objects.get(chunk=first).count
    assert list(run_scores([run.pk])) == [
        StoredScore(one, "P", 1, 0.9, 2.2, ""),
        StoredScore(two, "P", None, None, None, "worker <b>failed</b>"),
        StoredScore(one, "OFF", 0, 0.1, -2.2, ""),
        StoredScore(two, "OFF", 0, None, None, ""),  # not a figure: stored as missing
    ]
    assert [(s.item_id, s.key) for s in run_scores([run.pk], keys=["OFF"], item_ids=[two])] == [
        (two, "OFF")
    ]
    assert run_labels([run.pk]) == {one: {"P": 1, "OFF": 0}, two: {"P": None, "OFF": 0}}
    assert run_labels([run.pk], key="OFF") == {one: {"OFF": 0}, two: {"OFF": 0}}


@pytest.mark.parametrize("well_formed", [True, False])
def test_packed_columns_keep_every_figure_exactly(well_formed: bool) -> None:
    """Both ways of packing (an answer transposed whole, or outcome by outcome) give the same
    columns, and the bytes give them back to the last bit."""
    outcomes = [
        VariantOutcome(f"K{n % 7}", 10**12 + n // 7, n % 2, n / 997, (n - 500) / 3.1, "")
        for n in range(700)
    ]
    outcomes[3] = VariantOutcome("K3", outcomes[3].item_id, None, None, None, "timed out")
    if not well_formed:  # a repeated answer sends it down the one-by-one path
        outcomes.append(outcomes[0]._replace(label=1 - int(outcomes[0].label or 0)))
    packed = pack_scores({o.item_id for o in outcomes}, outcomes)
    assert len(packed) == 700 and packed.errors == {3: "timed out"}
    again = decode(packed.keys, {"3": "timed out"}, len(packed), encode(packed))
    assert again == packed and (again.keys, again.key, again.item) == (
        packed.keys,
        packed.key,
        packed.item,
    )
    assert again.p1[1] == 1 / 997 and again.label[3] is None and again.p1[3] is None


def test_a_label_other_than_0_or_1_is_stored_as_an_error() -> None:
    packed = pack_scores({1}, [VariantOutcome("P", 1, 7, 0.5, 0.0, "")])
    assert packed.label == [None] and packed.errors == {0: "Label 7 is neither 0 nor 1."}


def test_runs_read_in_the_order_given_each_item_and_key_once_per_run(author: Any) -> None:
    run, (first, second), (one, two, three, four) = _run(author, ["a", "b", "c", "d"])
    later = ExplainRun.objects.create(kind=RunKind.PROBE, version=run.version, attempt=2)
    later_first = ExplainChunk.objects.create(run=later, index=0, item_ids=[three])
    # A row from before the columns, then a chunk repeating its (item, key): the row,
    # read first, stays.
    ExplainScore.objects.create(run=run, item_id=three, key="P", label=0, p1=0.3, margin=-0.4)
    write_chunk_scores(
        run.pk,
        second.pk,
        pack_scores({three, four}, [VariantOutcome("P", three, 1, 0.8, 0.6, "")]),
    )
    write_chunk_scores(
        later.pk,
        later_first.pk,
        pack_scores({three}, [VariantOutcome("P", three, 1, 0.6, 0.1, "")]),
    )
    assert [(s.item_id, s.label) for s in run_scores([run.pk])] == [(three, 0)]
    # ``probes.record._labels`` and the others: a later run's answer comes after, and wins.
    assert [s.label for s in run_scores([run.pk, later.pk])] == [0, 1]


def test_postgresql_stores_the_columns_uncompressed() -> None:
    """Compressing a chunk's columns was most of their insert (see migration 0013)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not compress values")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
            [ChunkScores._meta.db_table, "columns"],
        )
        assert cursor.fetchone() == ("e",)
