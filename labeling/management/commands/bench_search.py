"""``manage.py bench_search``: item content search at 1,000,000 items.

Builds ``--items`` items (default 1,000,000) in ``--sets`` sample sets through the import's own
writer (``COPY`` on PostgreSQL, ``executemany`` on SQLite, so the full-text index is kept the
way an import keeps it), next to whatever the database holds. Texts are drawn from a vocabulary
of 30,000 made-up words with a Zipf distribution (rank r has weight 1/r^1.05), 5 to 60 words an
item: the top words are in most items, the tail's in a few. On PostgreSQL it then runs ANALYZE
on the items table, as autoanalyze would after an import this size.

It times, p50 / p95 over ``--requests`` queries per case (different words each time):
* the service (``search_items``: ids from the index, the page's rows, snippets), and
* the pages through the Django test client as a logged-in admin (templates rendered): the
  search page across all sets, the sample set page within one set;
for common words, rare words, two words, phrases and prefixes, across all sets and within
one, and a common word's page deep in the results (keyset cursor at the middle id).

Prints one JSON object. Removes what it built unless ``--keep``; ``--reuse`` times the items
an earlier ``--keep`` run left.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.db.models import Max, Min
from django.test import Client
from django.urls import reverse

from labeling.models import Item, SampleSet
from labeling.samples.writer import ItemRow, delete_items, item_writer
from labeling.search.query import parse
from labeling.search.services import search_items

PREFIX = "bench_search "
VOCABULARY = 30_000
BATCH = 5_000
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def vocabulary(rng: random.Random) -> list[str]:
    """Distinct made-up words, most frequent first (short words for the common ranks)."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCABULARY:
        n = 1 + min(3, len(words) // 2000) + rng.randint(0, 1)
        word = "".join(rng.choice(_SYLLABLES) for _ in range(n))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Command(BaseCommand):
    help = "Time item content search (service and pages) at 1,000,000 items."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=1_000_000)
        parser.add_argument("--sets", type=int, default=5)
        parser.add_argument("--requests", type=int, default=40, help="queries per case")
        parser.add_argument("--keep", action="store_true", help="keep the items it built")
        parser.add_argument("--reuse", action="store_true", help="time an earlier --keep run")

    def handle(self, *args: Any, **options: Any) -> None:
        n, requests = options["items"], options["requests"]
        rng = random.Random(21)
        words = vocabulary(rng)
        user = get_user_model().objects.get_or_create(
            username="bench-search-admin", defaults={"is_staff": True, "is_superuser": True}
        )[0]
        sets = list(SampleSet.objects.filter(name__startswith=PREFIX).order_by("pk"))
        built_s = None
        if not (options["reuse"] and sets):
            _log(f"{connection.vendor}: building {n:,} items in {options['sets']} sets…")
            t0 = time.perf_counter()
            sets = _build(n, options["sets"], words, rng, user)
            built_s = round(time.perf_counter() - t0, 1)
            _log(f"  built in {built_s}s")
        try:
            result = {
                "bench": "search",
                "database": connection.vendor,
                "items": Item.objects.filter(sample_set__in=sets).count(),
                "items_in_database": Item.objects.count(),
                "sets": len(sets),
                "build_seconds": built_s,
                "requests_per_case": requests,
                "cases": _measure(sets, words, requests, rng, user),
            }
            worst = max(c[k] for c in result["cases"].values() for k in c if k.endswith("p95_ms"))
            result["worst_p95_ms"] = worst
            self.stdout.write(json.dumps(result))
        finally:
            if not options["keep"]:
                for s in sets:
                    delete_items(s.pk)
                SampleSet.objects.filter(pk__in=[s.pk for s in sets]).delete()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _build(
    n: int, set_count: int, words: list[str], rng: random.Random, user: Any
) -> list[SampleSet]:
    weights = list(itertools.accumulate(1 / (r + 1) ** 1.05 for r in range(len(words))))
    write = item_writer()
    per_set = [n // set_count + (1 if i < n % set_count else 0) for i in range(set_count)]
    sets = []
    for i, size in enumerate(per_set):
        sample_set = SampleSet.objects.create(
            name=f"{PREFIX}{i}", source_format="bench", item_count=size, created_by=user
        )
        sets.append(sample_set)
        for start in range(0, size, BATCH):
            count = min(BATCH, size - start)
            lengths = [rng.randint(5, 60) for _ in range(count)]
            drawn = iter(rng.choices(words, cum_weights=weights, k=sum(lengths)))
            rows = [
                ItemRow(
                    f"b{start + j}",
                    " ".join(itertools.islice(drawn, length)),
                    f"{sample_set.pk}-{start + j}",
                    {},
                    None,
                    start + j + 1,
                )
                for j, length in enumerate(lengths)
            ]
            with transaction.atomic():
                write(sample_set.pk, rows)
        _log(f"  set {i + 1}/{set_count}: {size:,} items")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE labeling_item")
    return sets


def _cases(
    sets: list[SampleSet], words: list[str], requests: int, rng: random.Random
) -> dict[str, tuple[list[str], int | None, int | None]]:
    """Name → (queries, set id or None, cursor or None)."""
    common = words[:10]
    rare = [words[rng.randint(8_000, VOCABULARY - 1)] for _ in range(requests)]
    mid = [words[rng.randint(50, 2_000)] for _ in range(requests)]
    phrases = []
    for item in Item.objects.filter(sample_set=sets[0]).order_by("?")[:requests]:
        parts = item.text.split()
        at = rng.randrange(len(parts) - 1)
        phrases.append(f'"{parts[at]} {parts[at + 1]}"')
    prefixes = [words[rng.randint(100, 5_000)][:4] + "*" for _ in range(requests)]
    two = [f"{words[rng.randint(0, 30)]} {m}" for m in mid]
    ids = Item.objects.filter(sample_set__in=sets).aggregate(lo=Min("pk"), hi=Max("pk"))
    middle = (ids["lo"] + ids["hi"]) // 2
    one = sets[len(sets) // 2].pk
    return {
        "common word, all sets": (common, None, None),
        "common word, all sets, deep page": (common, None, middle),
        "rare word, all sets": (rare, None, None),
        "mid-frequency word, all sets": (mid, None, None),
        "two words, all sets": (two, None, None),
        "phrase, all sets": (phrases, None, None),
        "prefix, all sets": (prefixes, None, None),
        "common word, one set": (common, one, None),
        "rare word, one set": (rare, one, None),
        "phrase, one set": (phrases, one, None),
        "prefix, one set": (prefixes, one, None),
    }


def _measure(
    sets: list[SampleSet], words: list[str], requests: int, rng: random.Random, user: Any
) -> dict[str, dict[str, float]]:
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    results = {}
    for name, (queries, set_id, cursor) in _cases(sets, words, requests, rng).items():
        picked = [queries[i % len(queries)] for i in range(requests)]
        service_ms, rows = _time(_service(set_id, cursor), picked)
        page_ms, _ = _time(_page(client, set_id, cursor), picked)
        results[name] = {
            "service_p50_ms": _p(service_ms, 50),
            "service_p95_ms": _p(service_ms, 95),
            "page_p50_ms": _p(page_ms, 50),
            "page_p95_ms": _p(page_ms, 95),
            "mean_rows": round(statistics.mean(rows), 1),
        }
        _log(f"  {name}: {results[name]}")
    return results


def _service(set_id: int | None, cursor: int | None) -> Callable[[str], int]:
    def call(q: str) -> int:
        return len(search_items(parse(q), sample_set_id=set_id, cursor=cursor).rows)

    return call


def _page(client: Client, set_id: int | None, cursor: int | None) -> Callable[[str], int]:
    """The search page across all sets, or the set's page when ``set_id`` is given."""
    if set_id is None:
        url = reverse("search")
        extra: dict[str, Any] = {"kind": "items"}
        if cursor is not None:
            extra["cursor"] = cursor
    else:
        url, extra = reverse("labeling:sampleset_detail", args=[set_id]), {}

    def call(q: str) -> int:
        response = client.get(url, {"q": q, **extra})
        assert response.status_code == 200, response.status_code
        return response.content.count(b'class="search-hit"')

    return call


def _time(call: Callable[[str], int], queries: list[str]) -> tuple[list[float], list[int]]:
    call(queries[0])  # warm
    times, rows = [], []
    for q in queries:
        t0 = time.perf_counter()
        rows.append(call(q))
        times.append((time.perf_counter() - t0) * 1000)
    return times, rows


def _p(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 1)
