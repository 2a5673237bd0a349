"""``manage.py bench_queue --labels 1000000``: how fast a reviewer gets the next review task.

Stores a job with N labels (N/2 items under both wordings) and ~5% mismatches as review tasks,
resolves half of them (a queue in progress), then times ``claim_next_task`` over sequential
claim → decide cycles, rotating through a few reviewers. Prints one JSON object. Everything it
created is deleted afterwards, whatever happens.

On PostgreSQL the rows are generated inside the database (``INSERT ... SELECT generate_series``);
on SQLite with ``bulk_create`` and a smaller default.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, models, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.models import (
    Decision,
    GoldLabel,
    Item,
    Job,
    JobStatus,
    Label,
    ReviewStatus,
    ReviewTask,
    SampleSet,
)
from labeling.review import claim_next_task, submit_decision
from policies.models import Policy, Version
from policies.roles import REVIEWER, ensure_roles

DEFAULT_LABELS = {"postgresql": 1_000_000, "sqlite": 20_000}


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _insert_select(
    model: type[models.Model],
    exprs: dict[str, str | tuple[str, list[Any]]],
    tail: str,
    params: list[Any],
) -> None:
    """``INSERT INTO <model> (...) SELECT <exprs> <tail>``; other columns get their defaults.

    Built from the model's fields so a column added later does not break the benchmark.
    ``exprs`` maps a column to SQL, or to SQL and its parameters.
    """
    columns: list[str] = []
    selects: list[str] = []
    args: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        expr = exprs.get(field.column)
        if isinstance(expr, tuple):
            selects.append(expr[0])
            args.extend(expr[1])
        elif expr is not None:
            selects.append(expr)
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            selects.append("now()")
        else:
            selects.append("%s")
            default = field.get_default() if field.has_default() or not field.null else None
            args.append(field.get_db_prep_save(default, connection))
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(selects)} {tail}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*args, *params])


class Command(BaseCommand):
    help = "Time claiming the next review task with many labels stored; prints one JSON object."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--labels", type=int, default=None, help="labels to store (2/item)")
        parser.add_argument("--mismatch-rate", type=float, default=0.05)
        parser.add_argument("--claims", type=int, default=300, help="timed claims")
        parser.add_argument("--reviewers", type=int, default=3)

    def handle(self, *args: Any, **options: Any) -> None:
        vendor = connection.vendor
        labels = options["labels"] or DEFAULT_LABELS.get(vendor, 20_000)
        items = max(1, labels // 2)
        every = max(1, round(1 / max(options["mismatch_rate"], 1e-9)))
        tag = f"bench-queue-{uuid.uuid4().hex[:10]}"
        User = get_user_model()
        users = [
            User.objects.create_user(username=f"{tag}-{i}") for i in range(options["reviewers"])
        ]
        ensure_roles()
        reviewers = Group.objects.get(name=REVIEWER)
        for user in users:
            user.groups.add(reviewers)
        policy = version = sample_set = job = None
        try:
            policy = Policy.objects.create(name=tag, created_by=users[0])
            version = Version.objects.create(
                policy=policy, number=1, text="A wording", twin_text="B wording", author=users[0]
            )
            sample_set = SampleSet.objects.create(name=tag, created_by=users[0], item_count=items)
            job = Job.objects.create(
                version=version,
                sample_set=sample_set,
                status=JobStatus.SUCCEEDED,
                text_a=version.text,
                text_b=version.twin_text,
                item_count=items,
                created_by=users[0],
                finished_at=timezone.now(),
            )
            started = time.perf_counter()
            if vendor == "postgresql":
                self._fill_postgres(job, policy, items, every)
            else:
                self._fill_bulk(job, policy, items, every)
            fill_seconds = time.perf_counter() - started
            if vendor == "postgresql":
                # A bulk load leaves tables unvacuumed: the planner then probes index ends
                # through unfrozen heap pages and planning alone takes ~5 ms a query. A live
                # server's autovacuum reaches this state within minutes; measure that state.
                with connection.cursor() as cursor:
                    for model in (Item, Label, ReviewTask):
                        cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
            result = self._measure(job, policy, users, options["claims"])
            result.update(
                {
                    "labels": Label.objects.filter(job=job).count(),
                    "tasks": ReviewTask.objects.filter(job=job).count(),
                    "backend": vendor,
                    "fill_seconds": round(fill_seconds, 1),
                }
            )
        finally:
            self._clean(job, policy, version, sample_set, users)
        self.stdout.write(json.dumps(result, sort_keys=True))

    def _fill_postgres(self, job: Job, policy: Policy, items: int, every: int) -> None:
        # Item i: A says i % 3 == 0; B says the same, except every `every`-th item (a mismatch).
        with transaction.atomic():
            self._pg_items(job.sample_set_id, items)
            self._pg_labels(job.pk, job.sample_set_id, every)
            self._pg_tasks(job.pk, policy.pk, job.sample_set_id, items, every)
        with connection.cursor() as cursor:
            for model in (Item, Label, ReviewTask):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")

    def _pg_items(self, sample_set_id: int, items: int) -> None:
        _insert_select(
            Item,
            {
                "sample_set_id": str(int(sample_set_id)),
                "external_id": "'row-' || g",
                "text": "'benchmark content number ' || g || ' ' || md5(g::text)",
                "content_hash": "md5(g::text) || md5((g + 1)::text)",
                "row_number": "g",
            },
            "FROM generate_series(1, %s) AS g",
            [items],
        )

    def _pg_labels(self, job_id: int, sample_set_id: int, every: int) -> None:
        flipped = f"(mod(i.row_number, {every}) = 0 AND s.side = 'B')"
        said_one = "(mod(i.row_number, 3) = 0)"
        _insert_select(
            Label,
            {
                "job_id": str(int(job_id)),
                "item_id": "i.id",
                "side": "s.side",
                "label": f"CASE WHEN {said_one} <> {flipped} THEN 1 ELSE 0 END",
                "p1": f"CASE WHEN {said_one} <> {flipped} THEN 0.8 ELSE 0.2 END",
            },
            f"FROM {Item._meta.db_table} i CROSS JOIN (VALUES ('A'), ('B')) AS s(side) "
            "WHERE i.sample_set_id = %s",
            [sample_set_id],
        )

    def _pg_tasks(
        self, job_id: int, policy_id: int, sample_set_id: int, items: int, every: int
    ) -> None:
        said_one = "(CASE WHEN mod(i.row_number, 3) = 0 THEN 1 ELSE 0 END)"
        _insert_select(
            ReviewTask,
            {
                "job_id": str(int(job_id)),
                "item_id": "i.id",
                "policy_id": str(int(policy_id)),
                "label_a": said_one,
                "label_b": f"1 - {said_one}",
                "p1_a": f"0.2 + 0.6 * {said_one}",
                "p1_b": f"0.8 - 0.6 * {said_one}",
                # The older half is already reviewed: a queue in progress.
                "status": (
                    f"CASE WHEN i.row_number <= %s THEN '{ReviewStatus.RESOLVED.value}' "
                    f"ELSE '{ReviewStatus.OPEN.value}' END",
                    [items // 2],
                ),
            },
            f"FROM {Item._meta.db_table} i WHERE i.sample_set_id = %s "
            f"AND mod(i.row_number, {every}) = 0 ORDER BY i.id",
            [sample_set_id],
        )

    def _fill_bulk(self, job: Job, policy: Policy, items: int, every: int) -> None:
        with transaction.atomic():
            Item.objects.bulk_create(
                (
                    Item(
                        sample_set_id=job.sample_set_id,
                        external_id=f"row-{g}",
                        text=f"benchmark content number {g}",
                        content_hash=uuid.uuid5(uuid.NAMESPACE_OID, str(g)).hex * 2,
                        row_number=g,
                    )
                    for g in range(1, items + 1)
                ),
                batch_size=2000,
            )
            rows = list(
                Item.objects.filter(sample_set_id=job.sample_set_id).values_list("id", "row_number")
            )
            Label.objects.bulk_create(
                (
                    Label(
                        job=job,
                        item_id=pk,
                        side=side,
                        label=int((row % 3 == 0) != (side == "B" and row % every == 0)),
                        p1=0.5,
                    )
                    for pk, row in rows
                    for side in ("A", "B")
                ),
                batch_size=2000,
            )
            ReviewTask.objects.bulk_create(
                (
                    ReviewTask(
                        job=job,
                        item_id=pk,
                        policy=policy,
                        label_a=int(row % 3 == 0),
                        label_b=int(row % 3 != 0),
                        p1_a=0.6,
                        p1_b=0.4,
                        status=ReviewStatus.RESOLVED if row <= items // 2 else ReviewStatus.OPEN,
                    )
                    for pk, row in rows
                    if row % every == 0
                ),
                batch_size=2000,
            )

    def _measure(self, job: Job, policy: Policy, users: list[Any], claims: int) -> dict[str, Any]:
        # Scoped to the benchmark's own policy: never claim a real reviewer's task.
        for user in users[:2]:  # warm connections, caches and plans; not timed
            task = claim_next_task(reviewer=user, policy=policy)
            if task is not None:
                submit_decision(task=task, reviewer=user, label="1", wording="a")
        # The whole "next task" request as a reviewer's browser makes it: htmx GET of the
        # queue, which claims, counts, looks up earlier decisions and renders the task card.
        pages: list[float] = []
        url = reverse("labeling:queue") + f"?policy={policy.pk}"
        for i in range(min(claims, 100)):
            user = users[i % len(users)]
            client = Client(HTTP_HX_REQUEST="true", HTTP_HOST="localhost")
            client.force_login(user)
            started = time.perf_counter()
            response = client.get(url)
            pages.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"queue page answered {response.status_code}")
            task = claim_next_task(reviewer=user, policy=policy)  # the claim just made
            if task is None:
                break
            submit_decision(task=task, reviewer=user, label="1", wording="a")
        timings: list[float] = []
        filtered: list[float] = []
        for i in range(claims):
            user = users[i % len(users)]
            started = time.perf_counter()
            task = claim_next_task(reviewer=user, policy=policy)
            timings.append((time.perf_counter() - started) * 1000)
            if task is None:
                break
            submit_decision(task=task, reviewer=user, label="1", wording="a")
        for i in range(min(claims, 100)):
            user = users[i % len(users)]
            started = time.perf_counter()
            task = claim_next_task(reviewer=user, job=job, side_said_1="B", max_margin=0.7)
            filtered.append((time.perf_counter() - started) * 1000)
            if task is None:
                break
            submit_decision(task=task, reviewer=user, label="0", wording="b")
        return {
            "request_p50_ms": round(statistics.median(pages), 3) if pages else None,
            "request_p95_ms": round(_percentile(pages, 0.95), 3) if pages else None,
            "claims": len(timings),
            "p50_ms": round(statistics.median(timings), 3),
            "p95_ms": round(_percentile(timings, 0.95), 3),
            "max_ms": round(max(timings), 3),
            "filtered_claims": len(filtered),
            "filtered_p95_ms": round(_percentile(filtered, 0.95), 3) if filtered else None,
        }

    def _clean(
        self, job: Job | None, policy: Any, version: Any, sample_set: Any, users: list[Any]
    ) -> None:
        # Plain DELETEs for the bulk tables: the ORM's cascade would load a million rows.
        with transaction.atomic(), connection.cursor() as cursor:
            if job is not None:
                Decision.objects.filter(task__job=job).delete()
                GoldLabel.objects.filter(policy=policy).delete()
                cursor.execute(f"DELETE FROM {Label._meta.db_table} WHERE job_id = %s", [job.pk])
                cursor.execute(
                    f"DELETE FROM {ReviewTask._meta.db_table} WHERE job_id = %s", [job.pk]
                )
                Job.objects.filter(pk=job.pk).delete()
            if sample_set is not None:
                cursor.execute(
                    f"DELETE FROM {Item._meta.db_table} WHERE sample_set_id = %s", [sample_set.pk]
                )
                SampleSet.objects.filter(pk=sample_set.pk).delete()
            if policy is not None:
                Policy.objects.filter(pk=policy.pk).delete()
            get_user_model().objects.filter(pk__in=[u.pk for u in users]).delete()
