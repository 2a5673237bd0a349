"""Time the jobs page's query at a realistic history: ``python manage.py bench_job_list``.

Creates ``--jobs`` jobs (default 200,000) over 20 policies, 20 sample sets and 5 people who
started them, mostly finished with a few running, then times one page
(``labeling.jobs.listing.jobs_page``) unfiltered, by each filter, and far back in the history
(``before`` half way down). Prints one JSON object: p50 and p95 in milliseconds per case. Works
inside one transaction that is rolled back at the end, so nothing it created stays.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction

from labeling.jobs.listing import JobFilter, jobs_page
from labeling.models import Job, JobStatus, SampleSet
from policies.models import Policy, Version


class Rollback(Exception):
    """Raised at the end to roll the benchmark's rows back."""


class Command(BaseCommand):
    help = "Time the jobs page (one page, each filter, deep history) over --jobs jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, default=200_000)
        parser.add_argument("--repeat", type=int, default=30)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            with transaction.atomic():
                report = self._run(opts["jobs"], opts["repeat"], random.Random(opts["seed"]))
                raise Rollback
        except Rollback:
            pass
        self.stdout.write(json.dumps(report))

    def _run(self, n: int, repeat: int, rng: random.Random) -> dict[str, Any]:
        tag = f"bench-jobs-{os.getpid()}"
        users = [get_user_model().objects.create_user(username=f"{tag}-{i}") for i in range(5)]
        versions = [
            Version.objects.create(
                policy=Policy.objects.create(name=f"{tag} policy {i}", created_by=users[0]),
                number=1,
                text="Label 1 for insults.",
                author=users[0],
            )
            for i in range(20)
        ]
        sets = [
            SampleSet.objects.create(name=f"{tag} set {i}", created_by=users[0]) for i in range(20)
        ]
        started = time.perf_counter()
        statuses = [JobStatus.SUCCEEDED] * 90 + [JobStatus.FAILED] * 6 + [JobStatus.PARTIAL] * 3
        for start in range(0, n, 10_000):
            Job.objects.bulk_create(
                [
                    Job(
                        version=rng.choice(versions),
                        sample_set=rng.choice(sets),
                        created_by=rng.choice(users),
                        text_a="a",
                        text_b="b",
                        item_count=1000,
                        status=JobStatus.RUNNING if rng.random() < 0.002 else rng.choice(statuses),
                    )
                    for _ in range(min(10_000, n - start))
                ]
            )
        created = time.perf_counter() - started
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {Job._meta.db_table}")
        middle = Job.objects.order_by("-pk").values_list("pk", flat=True)[n // 2]
        cases: dict[str, Callable[[], object]] = {
            "unfiltered": lambda: jobs_page(JobFilter()),
            "status_running": lambda: jobs_page(JobFilter(status=JobStatus.RUNNING)),
            "policy": lambda: jobs_page(JobFilter(policy_id=versions[3].policy_id)),
            "sample_set": lambda: jobs_page(JobFilter(sample_set_id=sets[5].pk)),
            "started_by": lambda: jobs_page(JobFilter(started_by_id=users[2].pk)),
            "all_filters": lambda: jobs_page(
                JobFilter(
                    status=JobStatus.FAILED,
                    policy_id=versions[1].policy_id,
                    sample_set_id=sets[2].pk,
                    started_by_id=users[1].pk,
                )
            ),
            "deep_page": lambda: jobs_page(JobFilter(), before=middle),
        }
        return {
            "database": connection.vendor,
            "jobs": n,
            "create_seconds": round(created, 2),
            "page_ms": {name: _timed(case, repeat) for name, case in cases.items()},
        }


def _timed(case: Callable[[], object], repeat: int) -> dict[str, float]:
    case()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        case()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50": round(statistics.median(times), 2),
        "p95": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2),
    }
