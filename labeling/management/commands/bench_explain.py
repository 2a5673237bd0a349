"""Measure an attribution run through the real broker and real Celery workers.

``python manage.py bench_explain --mismatches 500`` (PostgreSQL in ``DATABASE_URL``, Redis in
``CELERY_BROKER_URL`` or ``--broker``) builds a finished job of ``--mismatches`` mismatched
items on a 30-clause policy (an Overview, 2 terms, 2 interpretation entries, 18 Includes and 7
Excludes criteria of one label) and its twin (every clause reworded), starts the bookkeeping
worker and one model worker as ``bin/run-studio`` does (``bench_job``'s, the CPU embedding
baseline by default), explains every mismatch (``labeling.explain.services.start_explain``)
and waits for the run. Prints one JSON object; everything it created is deleted afterwards
(``--keep`` keeps it).

* ``wall_seconds``: from the run's creation to its finish;
* ``model_seconds``: the scorer's own time, summed over chunks as the model worker reports it
  (above the wall time when the worker scores chunks in parallel); ``web_seconds``: the
  bookkeeping worker's time in ``labeling.record_explain`` tasks (from its log);
  ``outside_model_share``: ``web_seconds / (web_seconds + model_seconds)``, the share of the
  work that is bookkeeping, and ``web_share_of_wall``;
* ``variants`` (distinct, per item) and ``scores`` (variant scores recorded);
* ``job_page_queries``: the SQL queries of one GET of the job page once the run is done.

Lost chunks are re-sent every ``COPE_RESUME_EVERY_SECONDS`` while it waits, as beat does.

The job's labels are written, not computed (the run scores both wordings again and concludes
from its own scores): ``verdicts`` counts what the baseline found.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.explain import services
from labeling.explain.dispatch import ACTIVE
from labeling.management.commands._run_bench import (
    add_run_arguments,
    live_workers,
    production_broker,
    run_figures,
)
from labeling.models import (
    ExplainItem,
    ExplainRun,
    Item,
    Job,
    JobStatus,
    Label,
    ReviewTask,
    SampleSet,
)
from labeling.samples.values import content_hash
from policies.models import Policy, TwinOrigin, Version
from policies.roles import AUTHOR, ensure_roles

GOODS = ["drugs", "firearms", "ammunition", "explosives", "prescription pills", "vapes to minors"]
ACTS = ["Offers to sell", "Requests to buy", "Offers to trade"]
EXCLUDED = [
    "News reporting about the trade in {}.",
    "Discussion of laws that regulate {}.",
    "Harm-reduction advice about {}.",
    "Fiction or games that depict {}.",
    "Historical accounts of {}.",
    "Academic research on {}.",
    "Advertising by licensed shops for {}.",
]
POSTS = [
    "Selling {} cheap tonight, message me",
    "Anyone know where I can buy {} around here?",
    "Swapping my {} for a phone, DM",
    "The council debated new rules on {} yesterday",
    "My novel's villain smuggles {} across the border",
]


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def bench_policies() -> tuple[str, str]:
    """A 30-clause policy and its twin, every clause reworded."""
    includes = [f"{act} {goods} to another person." for act in ACTS for goods in GOODS]
    excludes = [e.format("regulated goods") for e in EXCLUDED]

    def policy(
        overview: str, terms: list[str], reading: list[str], inc: list[str], exc: list[str]
    ) -> str:
        return (
            f"# Criteria\n\n## Overview\n\n{overview}\n\n## Definition of Terms\n\n"
            f"{_bullets(terms)}\n\n## Interpretation of Language\n\n{_bullets(reading)}\n\n"
            "## Definition of Label\n\n### (RG) Regulated Goods Trade\n\n"
            f"#### Includes\n\n{_bullets(inc)}\n\n#### Excludes\n\n{_bullets(exc)}\n"
        )

    text_a = policy(
        "This policy finds content that offers to buy, sell or trade regulated goods.",
        [
            "**Regulated goods**: items whose sale the law restricts.",
            "**Minor**: a person under 18.",
        ],
        [
            "Read slang for regulated goods by its usual meaning.",
            "An offer counts without a price.",
        ],
        includes,
        excludes,
    )
    text_b = policy(
        "The policy identifies material proposing the sale or exchange of restricted goods.",
        [
            "**Regulated goods**: products the law limits the sale of.",
            "**Minor**: someone under 18.",
        ],
        [
            "Take coded words for regulated goods in their common sense.",
            "A proposal counts even with no price.",
        ],
        [f"Posts where someone {c[0].lower()}{c[1:]}" for c in includes],
        [f"Content that is {c[0].lower()}{c[1:]}" for c in excludes],
    )
    return text_a, text_b


def build_job(n: int) -> Job:
    """A finished job of ``n`` items, every one a mismatch (A says 1 on even rows, B on odd)."""
    text_a, text_b = bench_policies()
    user, _ = get_user_model().objects.get_or_create(username="bench-explain")
    policy = Policy.objects.create(name=f"bench_explain {time.time_ns()}", created_by=user)
    version = Version.objects.create(
        policy=policy,
        number=1,
        text=text_a,
        twin_text=text_b,
        twin_origin=TwinOrigin.HAND,
        author=user,
    )
    sample_set = SampleSet.objects.create(
        name="bench_explain", source_format="pasted", item_count=n, created_by=user
    )
    texts = [
        f"{POSTS[i % len(POSTS)].format(GOODS[(i // len(POSTS)) % len(GOODS)])} #{i}"
        for i in range(n)
    ]
    Item.objects.bulk_create(
        [
            Item(
                sample_set=sample_set,
                external_id=f"e-{i}",
                text=t,
                content_hash=content_hash(t),
                row_number=i + 1,
            )
            for i, t in enumerate(texts)
        ],
        batch_size=5000,
    )
    now = timezone.now()
    job = Job.objects.create(
        version=version, sample_set=sample_set, status=JobStatus.SUCCEEDED, text_a=text_a,
        text_b=text_b, item_count=n, done_a=n, done_b=n, created_by=user, prepared_at=now,
        started_at=now, finished_at=now,
    )  # fmt: skip
    Label.objects.bulk_create(
        [
            Label(
                job=job, item_id=pk, side=side, label=int((row % 2 == 0) == (side == "A")), p1=0.5
            )
            for row, pk in enumerate(
                sample_set.items.order_by("row_number").values_list("pk", flat=True)
            )
            for side in ("A", "B")
        ],
        batch_size=5000,
    )
    # Every item is a mismatch (A says 1 on even rows, B on odd ones): a review task each, as
    # the job's finish opens them.
    ReviewTask.objects.bulk_create(
        [
            ReviewTask(
                job=job, item_id=pk, policy=version.policy, label_a=int(row % 2 == 0),
                label_b=int(row % 2 == 1), p1_a=0.5, p1_b=0.5,
            )
            for row, pk in enumerate(
                sample_set.items.order_by("row_number").values_list("pk", flat=True)
            )
        ],
        batch_size=5000,
    )  # fmt: skip
    return job


def page_queries(job: Job) -> int:
    """SQL queries of one GET of the job page, as an author sees it."""
    ensure_roles()
    user = job.created_by
    user.groups.add(Group.objects.get(name=AUTHOR))
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    url = reverse("labeling:job_detail", args=[job.pk])
    client.get(url)  # warm: sessions, caches
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    if response.status_code != 200:
        raise CommandError(f"the job page answered {response.status_code}")
    return len(ctx.captured_queries)


def report(run: ExplainRun, tmp: Path, queries: int) -> dict[str, Any]:
    verdicts = dict(
        ExplainItem.objects.filter(run=run)
        .values_list("verdict")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {
        "benchmark": "explain",
        "mismatches": run.items_total,
        "explained": run.items_done,
        "clauses": 30,
        **run_figures(run, tmp),
        "verdicts": verdicts,
        "job_page_queries": queries,
        "database": connection.vendor,
        "broker": "redis",
    }


class Command(BaseCommand):
    help = "Explain a job's mismatches through Redis and real Celery workers; print the figures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--mismatches", type=int, default=500)
        add_run_arguments(parser, keeps="the job and its rows")

    def handle(self, *args: Any, **options: Any) -> None:
        broker = production_broker("bench_explain", options)
        job = build_job(options["mismatches"])
        with live_workers("bench_explain", broker, self.stderr) as (tmp, procs):
            run = services.start_explain(job, None, max_items=options["mismatches"])
            self._wait(run, options["timeout"], procs, tmp)
            run.refresh_from_db()
        out = report(run, tmp, page_queries(job))
        if not options["keep"]:
            policy, sample_set = job.version.policy, job.sample_set
            job.delete()
            sample_set.delete()
            Version.objects.filter(policy=policy).delete()
            policy.delete()
        self.stdout.write(json.dumps(out))

    def _wait(self, run: ExplainRun, timeout: float, procs: list[Any], tmp: Path) -> None:
        deadline = time.monotonic() + timeout
        resume_at = time.monotonic() + settings.COPE_RESUME_EVERY_SECONDS
        while time.monotonic() < deadline:
            status = ExplainRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
            if status not in ACTIVE:
                return
            if any(p.poll() is not None for p in procs):
                raise CommandError(f"a worker exited; logs in {tmp}")
            if time.monotonic() >= resume_at:  # what beat does in production
                resent = services.resume_stalled_runs()
                if resent:
                    self.stderr.write(f"re-sent lost chunks: {resent}")
                resume_at = time.monotonic() + settings.COPE_RESUME_EVERY_SECONDS
            time.sleep(0.5)
        raise CommandError(f"the run did not finish within {timeout:.0f} s; logs in {tmp}")
