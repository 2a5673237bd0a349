"""Measure a probe run through the real broker and real Celery workers.

``python manage.py bench_probe --items 200`` (PostgreSQL in ``DATABASE_URL``, Redis in
``CELERY_BROKER_URL`` or ``--broker``) builds ``bench_explain``'s 30-clause policy and its
items (``bench_explain.build_job``: the same data, its job unused), makes that set the
policy's evaluation set, starts the bookkeeping worker and one model worker as
``bin/run-studio`` does (``bench_job``'s, the CPU embedding baseline by default), probes the
version (``labeling.probes.services.start_probe``: the control, the inversion and drop of its
label, every clause removed) and waits for the run, re-sending lost chunks as beat does
(``bench_explain``'s wait). Prints one JSON object; everything it created is deleted
afterwards (``--keep`` keeps it).

The version is probed several times on the same workers (``--runs``, default 4): the first run
meets workers that have just started (the bookkeeping worker opens its database connection and
runs its code for the first time, the model worker loads its model), as a studio does once
after each start; the others meet them as a running studio's are. The top-level figures are
the median of those others by ``outside_model_share`` (a run's two or three bookkeeping tasks
are tens of milliseconds, and this machine's speed moves by that much from one second to the
next); ``warm_shares`` lists each of them, and the first run's figures are under
``first_run``.

* ``wall_seconds``: from the run's creation to its finish (its summary written);
* ``variants`` (distinct, per item), ``scores`` (variant scores recorded), ``scores_per_s``;
* ``model_seconds``: the scorer's own time as the model worker reports it; ``web_seconds``:
  the bookkeeping worker's time in ``labeling.record_explain`` tasks (from its log, the
  summary included); ``outside_model_share``: ``web_seconds / (web_seconds +
  model_seconds)``, the target being under 10%.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from labeling.management.commands._run_bench import (
    add_run_arguments,
    live_workers,
    log_size,
    production_broker,
    run_figures,
    wait_for_log,
)
from labeling.management.commands.bench_explain import Command as ExplainBench
from labeling.management.commands.bench_explain import build_job
from labeling.models import ExplainRun, Job, PolicyEvaluation
from labeling.probes import services
from policies.models import Version


def report(run: ExplainRun, tmp: Path, log_from: int = 0) -> dict[str, Any]:
    found = run.summary or {}
    return {
        "benchmark": "probe",
        "items": run.items_total,
        "scored": run.items_done,
        "clauses": 30,
        **run_figures(run, tmp, log_from),
        "positive": found.get("positive"),
        "leakage": (found.get("leakage") or {}).get("count"),
        "dead": len(found.get("dead") or []),
        "database": connection.vendor,
        "broker": "redis",
    }


def _share(run: dict[str, Any]) -> float:
    share = run["outside_model_share"]
    return 1.0 if share is None else float(share)


def _clean(job: Job) -> None:
    version = job.version
    policy, sample_set = version.policy, job.sample_set
    ExplainRun.objects.filter(version__policy=policy).delete()
    PolicyEvaluation.objects.filter(policy=policy).delete()
    job.delete()
    sample_set.delete()
    Version.objects.filter(policy=policy).delete()
    policy.delete()


class Command(BaseCommand):
    help = "Probe a 30-clause policy through Redis and real Celery workers; print the figures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=200)
        parser.add_argument(
            "--runs",
            type=int,
            default=4,
            help="probes of the version, one after the other on the same workers; the first "
            "meets them just started, the median of the others is reported (default 4)",
        )
        add_run_arguments(parser, keeps="the policy and its rows")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["runs"] < 1:
            raise CommandError("--runs must be at least 1.")
        broker = production_broker("bench_probe", options)
        job = build_job(options["items"])
        PolicyEvaluation.objects.create(policy=job.version.policy, sample_set=job.sample_set)
        waiter = ExplainBench()
        waiter.stderr = self.stderr  # its notes on re-sent chunks go where ours do
        with live_workers("bench_probe", broker, self.stderr) as (tmp, procs):
            figures = []
            for _ in range(options["runs"]):
                log_from = log_size(tmp)
                run = services.start_probe(job.version, by=None, max_items=options["items"])
                waiter._wait(run, options["timeout"], procs, tmp)
                run.refresh_from_db()
                logged = wait_for_log(run, tmp, log_from)
                figures.append({**report(run, tmp, log_from), "bookkeeping_tasks_logged": logged})
        warm = sorted(figures[1:] or figures, key=_share)
        out = {**warm[(len(warm) - 1) // 2], "runs": len(figures)}
        out["warm_shares"] = [run["outside_model_share"] for run in figures[1:]]
        if len(figures) > 1:
            first = figures[0]
            kept = ("status", "scores", "wall_seconds", "model_seconds", "web_seconds")
            tasks = ("outside_model_share", "bookkeeping_tasks_logged")
            out["first_run"] = {k: first[k] for k in (*kept, *tasks)}
        if not options["keep"]:
            _clean(job)
        self.stdout.write(json.dumps(out))
