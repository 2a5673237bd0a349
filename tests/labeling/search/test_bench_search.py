"""The search benchmark, run tiny: it builds its items through the import's writer, times
every case through the service and the pages, prints one JSON object, and removes its items."""

from __future__ import annotations

import io
import json
import random

import pytest
from django.core.management import call_command

from labeling.management.commands.bench_search import VOCABULARY, vocabulary
from labeling.models import Item, SampleSet

pytestmark = pytest.mark.django_db


def test_bench_search_prints_every_case_and_leaves_nothing() -> None:
    out = io.StringIO()
    call_command("bench_search", items=600, sets=3, requests=3, stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["items"] == 600 and result["sets"] == 3
    assert len(result["cases"]) == 11
    for figures in result["cases"].values():
        assert figures["service_p95_ms"] >= figures["service_p50_ms"] > 0
        assert figures["page_p95_ms"] >= figures["page_p50_ms"] > 0
    # Common words fill a page; the pages render the rows the service found.
    assert result["cases"]["common word, all sets"]["mean_rows"] == 20
    assert result["worst_p95_ms"] == max(
        v for c in result["cases"].values() for k, v in c.items() if k.endswith("p95_ms")
    )
    assert not Item.objects.exists() and not SampleSet.objects.exists()


def test_vocabulary_is_distinct_words() -> None:
    words = vocabulary(random.Random(1))
    assert len(words) == len(set(words)) == VOCABULARY
    assert all(w.isalpha() for w in words)
