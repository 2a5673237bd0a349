"""Measure a job's bookkeeping against its model time.

``python manage.py bench_job --items 2000`` creates a sample set and a policy version (the demo
harassment policy and its hand-written twin), starts a job, scores every chunk in this process
with the worker's own code (``worker.tasks.score_request`` with the configured backend) and
feeds each ``ScoreResult`` dict to ``record_chunk`` as a Celery worker would. Prints one JSON
object; everything it created is deleted afterwards.

``bookkeeping_seconds`` is the wall time of everything the web side does for the job: starting
it (chunk rows, requests) and every ``record_chunk`` call including its commits and the final
agreement and review tasks. ``model_seconds`` is the wall time of scoring. The job's own
counters (what its page shows) are reported beside them as ``job_*``.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from labeling import services
from labeling.importing import content_hash
from labeling.models import Item, Job, SampleSet
from labeling.tasks import record_chunk
from policies.models import Policy, TwinOrigin, Version

DEMO = Path(__file__).resolve().parents[3] / "cope_studio" / "demo"


class Command(BaseCommand):
    help = "Run a job in-process with the configured scorer and print model vs bookkeeping time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=2000)
        parser.add_argument("--chunk-size", type=int, default=None)
        parser.add_argument("--keep", action="store_true", help="keep the job and its rows")

    def handle(self, *args: Any, **options: Any) -> None:
        from worker.config import WorkerConfig
        from worker.contract import ScoreRequest
        from worker.loader import load_scorer
        from worker.tasks import score_request

        logging.getLogger("labeling.tasks").setLevel(logging.WARNING)  # one line per chunk
        n = options["items"]
        with (DEMO / "samples" / "harassment-bullying.csv").open(encoding="utf-8") as fh:
            texts = [row["text"] for row in csv.DictReader(fh)]
        policy_a = (DEMO / "policies" / "harassment-bullying.md").read_text(encoding="utf-8")
        policy_b = (DEMO / "policies" / "harassment-bullying.twin.md").read_text(encoding="utf-8")

        scorer = load_scorer(WorkerConfig.from_env())
        user, _ = get_user_model().objects.get_or_create(username="bench-job")
        policy = Policy.objects.create(name=f"bench_job {time.time_ns()}", created_by=user)
        version = Version.objects.create(
            policy=policy,
            number=1,
            text=policy_a,
            twin_text=policy_b,
            twin_origin=TwinOrigin.HAND,
            author=user,
        )
        sample_set = SampleSet.objects.create(
            name="bench_job", source_format="pasted", item_count=n, created_by=user
        )
        items = []
        for i in range(n):
            # Cycle the demo texts, numbered so that every item is distinct.
            text = f"{texts[i % len(texts)]} #{i}"
            items.append(
                Item(
                    sample_set=sample_set,
                    external_id=f"b-{i}",
                    text=text,
                    content_hash=content_hash(text),
                    row_number=i + 1,
                )
            )
        Item.objects.bulk_create(items, batch_size=5000)

        requests: list[dict[str, Any]] = []
        original = services.send_score_request
        services.send_score_request = requests.append  # type: ignore[assignment]
        model = bookkeeping = 0.0
        try:
            started = time.perf_counter()
            job = services.start_job(
                version=version,
                sample_set=sample_set,
                sample_size=None,
                by=user,
                chunk_size=options["chunk_size"],
            )
            bookkeeping += time.perf_counter() - started
            for request in requests:
                t0 = time.perf_counter()
                # Scoring and serialising the result happen on the GPU worker.
                result = score_request(scorer, ScoreRequest.from_dict(request)).to_dict()
                t1 = time.perf_counter()
                record_chunk(result)
                model += t1 - t0
                bookkeeping += time.perf_counter() - t1
            wall = time.perf_counter() - started
        finally:
            services.send_score_request = original  # type: ignore[assignment]

        job = Job.objects.get(pk=job.pk)
        out = {
            "items": job.item_count,
            "labels": job.done_a + job.done_b,
            "errors": job.errors_a + job.errors_b,
            "chunks": job.chunk_count * 2,
            "chunk_size": job.chunk_size,
            "status": job.status,
            "backend": job.backend,
            "model_id": job.model_id,
            "model_seconds": round(model, 3),
            "bookkeeping_seconds": round(bookkeeping, 3),
            "bookkeeping_fraction": round(bookkeeping / model, 4) if model else None,
            "job_model_seconds": round(job.model_seconds, 3),
            "job_bookkeeping_seconds": round(job.bookkeeping_seconds, 3),
            "wall_seconds": round(wall, 3),
            "agreement": job.stats.get("p_o"),
            "database": connection.vendor,
        }
        if not options["keep"]:
            job.delete()
            sample_set.delete()
            policy.delete()
        self.stdout.write(json.dumps(out))
