"""``manage.py bench_items``: the per-item results page and the gold figures at scale.

Builds one finished binocular job over N items (default 100,000: 2·N labels, gold on half of
the items, from the import column and typed rows, review tasks for the mismatches) next to
whatever the database already holds, then times, through the real views (Django test client,
templates rendered, as a logged-in admin):

* items pages: first page, pages deep in the job (keyset cursor near the end), and each
  filter (mismatches, wrong vs gold, margin, side that said 1), p50 / p95 over ``--pages``;
* the job page (agreement + gold figures for both sides, computed with SQL aggregates);
* the full CSV download, streamed.

Run it on PostgreSQL (``DATABASE_URL``) for figures that mean something. It removes what it
built unless ``--keep``.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.agreement import compute_agreement
from labeling.models import GoldLabel, GoldSource, Item, Job, Label, ReviewTask, SampleSet
from policies.models import Policy, Version

TEXT = "bench item {i}: a post about neighbour #{j} and the committee's report on it"


class Command(BaseCommand):
    help = "Time the items page, the job page's gold figures and the CSV at 100,000 items."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=100_000)
        parser.add_argument("--pages", type=int, default=30, help="requests per measurement")
        parser.add_argument("--keep", action="store_true", help="keep the data it built")
        parser.add_argument(
            "--reuse", action="store_true", help="time a job an earlier --keep run left"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        n, pages = options["items"], options["pages"]
        self.stdout.write(f"Database: {connection.vendor}. Building a job over {n:,} items…")
        started = time.perf_counter()
        kept = (
            Job.objects.filter(version__policy__name__startswith="bench_items ", item_count=n)
            .order_by("-pk")
            .first()
            if options["reuse"]
            else None
        )
        if kept is not None:
            user, job = kept.created_by, kept
            self.stdout.write(f"  reusing job {job.pk} from an earlier --keep run")
        else:
            user, job = _build(n)
            self.stdout.write(f"  built in {time.perf_counter() - started:.1f}s")
        self.stdout.write(
            f"  the database holds {Label.objects.count():,} labels, "
            f"{Item.objects.count():,} items, {GoldLabel.objects.count():,} gold labels"
        )
        try:
            client = Client(HTTP_HOST="localhost")
            client.force_login(user)
            url = reverse("labeling:job_items", args=[job.pk])
            ids = list(
                Label.objects.filter(job=job, side="A")
                .order_by("item_id")
                .values_list("item_id", flat=True)[n - 5_000 : n - 4_999]
            ) or [0]
            deep = ids[0]
            cases = [
                ("first page", ""),
                ("deep page (item ~95%)", f"after={deep}"),
                ("mismatches", "mismatch=on"),
                ("mismatches, deep", f"mismatch=on&after={deep}"),
                ("A wrong vs gold", "wrong=a"),
                ("B false negatives", "wrong=b_fn"),
                ("no gold", "wrong=no_gold"),
                ("margin < 0.05", "margin=0.05"),
                ("only A said 1", "said=only_a"),
                ("htmx fragment, deep", f"after={deep}&htmx"),
            ]
            self.stdout.write(f"\nItems page, {pages} requests each (ms):")
            self.stdout.write(f"  {'case':<26} {'p50':>8} {'p95':>8} {'rows':>6}")
            for name, query in cases:
                headers = {"HX-Request": "true"} if query.endswith("htmx") else {}
                query = query.removesuffix("&htmx").removesuffix("htmx")
                times, rows = _time(client, f"{url}?{query}", pages, headers)
                self.stdout.write(
                    f"  {name:<26} {_p(times, 50):>8.1f} {_p(times, 95):>8.1f} {rows:>6}"
                )
            job_url = reverse("labeling:job_detail", args=[job.pk])
            times, _ = _time(client, job_url, max(5, pages // 3), {})
            self.stdout.write(
                f"\nJob page with gold figures for both sides: p50 {_p(times, 50):.1f} ms, "
                f"p95 {_p(times, 95):.1f} ms"
            )
            csv_url = reverse("labeling:job_items_csv", args=[job.pk])
            t0 = time.perf_counter()
            response = client.get(csv_url)
            size = len(response.getvalue())
            self.stdout.write(
                f"CSV of all {n:,} items: {time.perf_counter() - t0:.1f}s, {size / 1e6:.1f} MB "
                "(streamed)"
            )
        finally:
            if not options["keep"] and not options["reuse"]:
                _remove(job)
                self.stdout.write("Removed the bench data.")


def _time(client: Client, url: str, count: int, headers: dict[str, str]) -> tuple[list[float], int]:
    client.get(url, headers=headers)  # warm
    times = []
    rows = 0
    for _ in range(count):
        t0 = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
        rows = response.content.count(b'<tr id="item-')
    return times, rows


def _p(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _build(n: int) -> tuple[Any, Job]:
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username="bench-items-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    rng = random.Random(7)
    stamp = timezone.now().strftime("%Y%m%d%H%M%S%f")
    with transaction.atomic():
        policy = Policy.objects.create(name=f"bench_items {stamp}", created_by=user)
        version = Version.objects.create(
            policy=policy, number=1, text="# A\n", twin_text="# B\n", author=user
        )
        sample_set = SampleSet.objects.create(
            name=f"bench_items {stamp}", item_count=n, created_by=user
        )
        Item.objects.bulk_create(
            (
                Item(
                    sample_set=sample_set,
                    external_id=f"b-{i}",
                    text=TEXT.format(i=i, j=rng.randrange(1000)),
                    content_hash=f"{i:064d}",
                    row_number=i,
                    expected_label=rng.choice((0, 1)) if i % 4 == 0 else None,
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
            created_by=user,
            finished_at=timezone.now(),
        )
    item_ids = list(sample_set.items.order_by("pk").values_list("pk", flat=True))
    pairs = []
    labels = []
    for item_id in item_ids:
        pa = rng.random()
        pb = min(1.0, max(0.0, pa + rng.gauss(0, 0.08)))
        la, lb = int(pa >= 0.5), int(pb >= 0.5)
        pairs.append((item_id, la, lb, pa, pb))
        labels.append(Label(job=job, item_id=item_id, side="A", label=la, p1=pa))
        labels.append(Label(job=job, item_id=item_id, side="B", label=lb, p1=pb))
    Label.objects.bulk_create(labels, batch_size=5000)
    stats = compute_agreement((la, lb) for _, la, lb, _, _ in pairs).to_dict()
    Job.objects.filter(pk=job.pk).update(stats=stats)
    ReviewTask.objects.bulk_create(
        (
            ReviewTask(job=job, item_id=i, policy=policy, label_a=la, label_b=lb, p1_a=pa, p1_b=pb)
            for i, la, lb, pa, pb in pairs
            if la != lb
        ),
        batch_size=5000,
    )
    GoldLabel.objects.bulk_create(
        (
            GoldLabel(
                policy=policy,
                item_id=i,
                label=rng.choice("01u"),
                source=GoldSource.TYPED,
                decided_by=user,
            )
            for i in item_ids[1::4]
        ),
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE labeling_label, labeling_item, labeling_goldlabel")
    job.refresh_from_db()
    return user, job


def _remove(job: Job) -> None:
    policy_id, set_id = job.version.policy_id, job.sample_set_id
    with transaction.atomic():
        ReviewTask.objects.filter(job=job).delete()
        GoldLabel.objects.filter(policy_id=policy_id).delete()
        Label.objects.filter(job=job).delete()
        Job.objects.filter(pk=job.pk).delete()
        SampleSet.objects.filter(pk=set_id).delete()
        Version.objects.filter(policy_id=policy_id).delete()
        Policy.objects.filter(pk=policy_id).delete()
