"""``manage.py bench_agreement``: the reviewer agreement pages at scale.

Builds one policy with review overlap 3 and one finished job of N mismatches (default 30,000),
each decided by three reviewers (3·N votes, a final decision where they agree, the rest waiting
for adjudication), beside whatever the database already holds. Then times:

* the background refresh (``labeling.review.snapshots.refresh_agreement``): the job's and the
  policy's figures computed from every vote, once;
* a second refresh, which finds both snapshots current and writes nothing;
* the job's and the policy's agreement pages through the real views (Django test client,
  templates rendered), p50 / p95 over ``--pages`` requests, and the queries each runs.

Prints one JSON object. Run it on PostgreSQL (``DATABASE_URL``) and SQLite; it removes what it
built unless ``--keep``.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.models import (
    AgreementSnapshot,
    Decision,
    Item,
    Job,
    ReviewStatus,
    ReviewTask,
    ReviewVote,
    SampleSet,
)
from labeling.review.snapshots import refresh_agreement
from policies.models import Policy, Version

RATERS = 3


class Command(BaseCommand):
    help = "Time the agreement refresh and the agreement pages at 30,000 mismatches x 3 votes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tasks", type=int, default=30_000)
        parser.add_argument("--pages", type=int, default=30, help="requests per measurement")
        parser.add_argument("--keep", action="store_true", help="keep the data it built")

    def handle(self, *args: Any, **options: Any) -> None:
        n, pages = options["tasks"], options["pages"]
        started = time.perf_counter()
        admin, job = _build(n)
        built = time.perf_counter() - started
        try:
            t0 = time.perf_counter()
            written = refresh_agreement(job_id=job.pk)
            refresh_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = refresh_agreement(job_id=job.pk)
            debounced_ms = (time.perf_counter() - t0) * 1000
            client = Client(HTTP_HOST="localhost")
            client.force_login(admin)
            result: dict[str, Any] = {
                "database": connection.vendor,
                "tasks": n,
                "votes": ReviewVote.objects.filter(task__job=job).count(),
                "build_s": round(built, 1),
                "refresh_s": round(refresh_s, 2),
                "refresh_written": written,
                "refresh_again_ms": round(debounced_ms, 1),
                "refresh_again_written": again,
            }
            for name, url in (
                ("job_page", reverse("labeling:job_review_team", args=[job.pk])),
                ("policy_page", reverse("labeling:policy_review_team", args=[_policy(job)])),
            ):
                result[name] = _time(client, url, pages)
            self.stdout.write(json.dumps(result, indent=2))
        finally:
            if not options["keep"]:
                _remove(job)


def _policy(job: Job) -> int:
    return int(job.version.policy_id)


def _time(client: Client, url: str, count: int) -> dict[str, Any]:
    client.get(url)  # warm
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
        assert b"As of" in response.content and b"updating" not in response.content
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 1),
        "p95_ms": round(cuts[94], 1),
        "queries": len(queries.captured_queries),
    }


def _build(n: int) -> tuple[Any, Job]:
    users = get_user_model().objects
    admin, _ = users.get_or_create(
        username="bench-agreement-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    raters = [users.get_or_create(username=f"bench-agreement-{i}")[0] for i in range(RATERS)]
    rng = random.Random(7)
    stamp = timezone.now().strftime("%Y%m%d%H%M%S%f")
    with transaction.atomic():
        policy = Policy.objects.create(
            name=f"bench_agreement {stamp}", created_by=admin, review_overlap=RATERS
        )
        version = Version.objects.create(
            policy=policy, number=1, text="# A\n", twin_text="# B\n", author=admin
        )
        sample_set = SampleSet.objects.create(
            name=f"bench_agreement {stamp}", item_count=n, created_by=admin
        )
        Item.objects.bulk_create(
            (
                Item(
                    sample_set=sample_set,
                    external_id=f"a-{i}",
                    text=f"agreement bench item {i}",
                    content_hash=f"{i:064d}",
                    row_number=i,
                )
                for i in range(n)
            ),
            batch_size=5000,
        )
        job = Job.objects.create(
            version=version,
            sample_set=sample_set,
            status="succeeded",
            text_a=version.text,
            text_b=version.twin_text,
            item_count=n,
            created_by=admin,
            finished_at=timezone.now(),
        )
    items = list(sample_set.items.order_by("pk").values_list("pk", flat=True))
    ReviewTask.objects.bulk_create(
        (
            ReviewTask(job=job, item_id=i, policy=policy, label_a=1, label_b=0, p1_a=0.7, p1_b=0.3)
            for i in items
        ),
        batch_size=5000,
    )
    votes, finals = [], []
    for task_id in job.review_tasks.order_by("pk").values_list("pk", flat=True):
        truth = rng.choice("01")
        labels = [truth if rng.random() < 0.85 else rng.choice("01u") for _ in raters]
        votes += [
            ReviewVote(task_id=task_id, reviewer=r, label=label, wording="a", seconds=rng.random())
            for r, label in zip(raters, labels, strict=True)
        ]
        if len(set(labels)) == 1:
            finals.append(Decision(task_id=task_id, reviewer=raters[0], label=truth, wording="a"))
    ReviewVote.objects.bulk_create(votes, batch_size=5000)
    Decision.objects.bulk_create(finals, batch_size=5000)
    decided = job.review_tasks.filter(decision__isnull=False)
    decided.update(status=ReviewStatus.RESOLVED)
    job.review_tasks.exclude(status=ReviewStatus.RESOLVED).update(status=ReviewStatus.ADJUDICATE)
    return admin, job


def _remove(job: Job) -> None:
    policy_id, set_id = job.version.policy_id, job.sample_set_id
    with transaction.atomic():
        AgreementSnapshot.objects.filter(policy_id=policy_id).delete()
        ReviewVote.objects.filter(task__job=job).delete()
        Decision.objects.filter(task__job=job).delete()
        ReviewTask.objects.filter(job=job).delete()
        Job.objects.filter(pk=job.pk).delete()
        SampleSet.objects.filter(pk=set_id).delete()
        Version.objects.filter(policy_id=policy_id).delete()
        Policy.objects.filter(pk=policy_id).delete()
