"""Measure a what-if edit through the real broker and real Celery workers.

``python manage.py bench_whatif`` (PostgreSQL in ``DATABASE_URL``, Redis in
``CELERY_BROKER_URL`` or ``--broker``) builds ``bench_explain``'s 30-clause policy and a
finished job of ``--items`` items on it (``bench_explain.build_job``: labels written, not
computed), of which the first ``--mismatches`` stay mismatches and the rest agree, gives
``--gold`` of them a gold label (the trade offers 1, the rest 0), makes the job the version's
deciding job, starts the bookkeeping worker and one model worker as ``bin/run-studio`` does
(``bench_job``'s, the CPU embedding baseline by default), submits an edit of the first
Excludes criterion (``labeling.whatif.services.start_whatif``) and waits for its table,
re-sending lost chunks as beat does (``bench_explain``'s wait). Prints one JSON object;
everything it created is deleted afterwards (``--keep`` keeps it).

* ``table_seconds``: from the edit's submit (validation included) to the full before -> after
  table written (the run's summary); ``wall_seconds``: the run's creation to its finish;
* ``model_seconds``: the scorer's own time as the model worker reports it; ``web_seconds``:
  the bookkeeping worker's time in ``labeling.record_explain`` tasks (from its log, the
  table included); ``outside_model_share``: ``web_seconds / (web_seconds + model_seconds)``
  and ``outside_model_share_of_table``: ``1 - model_seconds / table_seconds``;
* ``finisher_wired``: whether the engine wrote the table at the run's finish
  (``labeling.runs.finish_run`` dispatching kind whatif); when it did not, this
  command writes it (``finish_whatif``) and its time is counted in ``table_seconds``.

The job's labels are written, so the rescored A and B need not equal them
(``same_as_job``); the affected items are every mismatch (no attribution run exists).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from labeling.management.commands._run_bench import (
    add_run_arguments,
    live_workers,
    production_broker,
)
from labeling.management.commands.bench_explain import POSTS, build_job
from labeling.management.commands.bench_explain import Command as ExplainBench
from labeling.management.commands.bench_job import _SUCCEEDED
from labeling.management.commands.bench_probe import _clean
from labeling.models import ExplainRun, Item, Job, Label, PolicyEvaluation, ReviewTask
from labeling.whatif import services
from labeling.whatif.record import finish_whatif
from policies.models import Policy

CLAUSE = "label/RG/excludes/1"  # "News reporting about the trade in regulated goods."
# An exception worded like the selling posts: on the baseline (which labels every post of this
# policy 1) it turns them 0, so the table has changed verdicts to list (broken against gold).
EDIT = "Selling drugs or firearms cheap tonight, message me."
# POSTS rows that offer a trade (sell, buy, swap): gold 1; the debate and the novel: gold 0.
TRADE_POSTS = 3


def build_decided_job(items: int, mismatches: int, gold: int) -> Job:
    """``build_job(items)`` with only the first ``mismatches`` rows left mismatched, ``gold``
    rows given gold, and made its version's deciding job on the policy's evaluation set."""
    if not 0 < mismatches <= items or not 0 <= gold <= items:
        raise CommandError("need 0 < --mismatches <= --items and 0 <= --gold <= --items")
    job = build_job(items)
    ids = list(job.sample_set.items.order_by("row_number").values_list("pk", flat=True))
    agree = ids[mismatches:]
    Label.objects.filter(job=job, item_id__in=agree, side="B").update(label=0)
    Label.objects.filter(job=job, item_id__in=agree, side="A").update(label=0)
    ReviewTask.objects.filter(job=job, item_id__in=agree).delete()
    for value in (0, 1):
        rows = [
            pk for row, pk in enumerate(ids[:gold]) if (row % len(POSTS) < TRADE_POSTS) == value
        ]
        Item.objects.filter(pk__in=rows).update(expected_label=value)
    Job.objects.filter(pk=job.pk).update(stats={"n": items})
    Policy.objects.filter(pk=job.version.policy_id).update(min_sample_size=1)
    PolicyEvaluation.objects.create(policy=job.version.policy, sample_set=job.sample_set)
    return Job.objects.select_related("version__policy", "sample_set").get(pk=job.pk)


def report(run: ExplainRun, tmp: Path, table_seconds: float, wired: bool) -> dict[str, Any]:
    web_seconds = sum(
        float(m.group(2))
        for m in _SUCCEEDED.finditer((tmp / "web.log").read_text(errors="replace"))
        if m.group(1) == "labeling.record_explain"
    )
    wall = (run.finished_at - run.created_at).total_seconds() if run.finished_at else None
    busy = web_seconds + run.model_seconds
    table = run.summary or {}
    whole, gold = table.get("whole") or {}, table.get("gold") or {}
    return {
        "benchmark": "whatif",
        "items": run.items_total,
        "scored": table.get("scored"),
        "affected": (table.get("affected") or {}).get("n"),
        "gold": gold.get("n"),
        "status": run.status,
        "clauses": 30,
        "variants": run.variants,
        "scores": run.scores,
        "chunks": run.chunk_count,
        "chunk_size": run.chunk_size,
        "chunks_in_flight": settings.COPE_CHUNKS_IN_FLIGHT,
        "backend": run.backend,
        "table_seconds": round(table_seconds, 2),
        "wall_seconds": round(wall, 2) if wall else None,
        "model_seconds": round(run.model_seconds, 2),
        "web_seconds": round(web_seconds, 2),
        "outside_model_share": round(web_seconds / busy, 4) if busy else None,
        "outside_model_share_of_table": round(1 - run.model_seconds / table_seconds, 4)
        if table_seconds
        else None,
        "run_bookkeeping_seconds": round(run.bookkeeping_seconds, 2),
        "finisher_wired": wired,
        "agreement": [
            (whole.get("before") or {}).get("agreement"),
            (whole.get("after") or {}).get("agreement"),
        ],
        "gold_f1": [(gold.get("before") or {}).get("f1"), (gold.get("after") or {}).get("f1")],
        "changed": {
            k: (table.get("changed") or {}).get(f"{k}_count") for k in ("fixed", "broken", "other")
        },
        "same_as_job": table.get("same_as_job"),
        "database": connection.vendor,
        "broker": "redis",
    }


class Command(BaseCommand):
    help = "Score a what-if edit of a 30-clause policy through Redis and real Celery workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=350)
        parser.add_argument("--mismatches", type=int, default=48)
        parser.add_argument("--gold", type=int, default=300)
        add_run_arguments(parser, keeps="the policy and its rows")

    def handle(self, *args: Any, **options: Any) -> None:
        broker = production_broker("bench_whatif", options)
        job = build_decided_job(options["items"], options["mismatches"], options["gold"])
        with live_workers("bench_whatif", broker, self.stderr) as (tmp, procs):
            run, seconds, wired = self._measure(job, options["timeout"], procs, tmp)
        out = report(run, tmp, seconds, wired)
        if not options["keep"]:
            _clean(job)
        self.stdout.write(json.dumps(out))

    def _measure(
        self, job: Job, timeout: float, procs: list[Any], tmp: Path
    ) -> tuple[ExplainRun, float, bool]:
        """(the finished run, seconds from submit to its table, whether the engine wrote it)."""
        started = time.monotonic()
        run = services.start_whatif(job.version, clause_key=CLAUSE, edit_a=EDIT, by=None)
        waiter = ExplainBench()
        waiter.stderr = self.stderr  # its notes on re-sent chunks go where ours do
        waiter._wait(run, timeout, procs, tmp)
        run.refresh_from_db()
        wired = "whole" in run.summary
        if not wired:
            finish_whatif(run.pk)
            run.refresh_from_db()
        return run, time.monotonic() - started, wired
