"""Time a sample-set import as a user has it: ``python manage.py bench_import --items 100000``.

Generates a CSV of N items, then goes through the real pages with Django's test client (upload,
preview, confirm) as an author, and lets a real Celery worker (``celery -A cope_studio worker
-Q default``, started here on the configured broker: Redis with ``CELERY_BROKER_URL``, else the
filesystem broker) run the import. Prints one JSON line: the time of each request (what the
user waits for; the confirm is the one that used to hold the whole import) and the background
import from the confirm to the set being ready (what the progress bar shows).
``--in-process`` runs the task in this process instead of a worker.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse

from labeling.models import SampleSet, SampleSetStatus
from labeling.samples.services import run_import
from policies.roles import AUTHOR, ensure_roles

WORDS = (
    "the a policy content user post comment reply thread insult threat idea work public "
    "person target abuse harm speech review label model report team lisbon weather"
).split()


def _write_csv(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "label", "source"])
        for i in range(n):
            text = " ".join(rng.choices(WORDS, k=rng.randint(8, 30)))
            writer.writerow([f"item-{i}", text, rng.randint(0, 1), "bench"])


def _start_worker(tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    celery = str(Path(sys.executable).with_name("celery"))
    log = tmp / "worker.log"
    env = {
        **os.environ,
        "COPE_DATA_DIR": str(tmp),
        "COPE_BROKER_DIR": str(settings.BROKER_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    argv = [celery, "-A", "cope_studio", "worker", "-Q", "default", "--pool", "solo", "-c", "1"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-n", "bench@%h"]
    argv += ["-l", "info"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if " ready." in log.read_text(errors="replace"):
            return proc, log
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise CommandError(f"the Celery worker did not start:\n{log.read_text()[-3000:]}")


class Command(BaseCommand):
    help = "Import N generated items through the real pages and worker; print timings as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=100_000)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--in-process", action="store_true", help="run the import task in this process"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        n = options["items"]
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            path = tmp / "bench.csv"
            _write_csv(path, n, options["seed"])
            ensure_roles()
            user, _ = get_user_model().objects.get_or_create(username="bench-import")
            user.groups.add(Group.objects.get(name=AUTHOR))
            worker = None
            if not options["in_process"]:
                worker, log = _start_worker(tmp)
            try:
                with override_settings(DATA_DIR=tmp, ALLOWED_HOSTS=["testserver"]):
                    # A web process that has served a request before: templates loaded, the
                    # broker connection open (the first send in a process takes ~1 s).
                    warm = tmp / "warm.csv"
                    _write_csv(warm, 10, 0)
                    self._run(user, warm, 10, in_process=options["in_process"])
                    result = self._run(user, path, n, in_process=options["in_process"])
            finally:
                if worker is not None:
                    worker.terminate()
                    worker.wait(timeout=30)
        self.stdout.write(json.dumps(result))

    def _run(self, user: Any, path: Path, n: int, *, in_process: bool) -> dict[str, Any]:
        client = Client()
        client.force_login(user)
        size_mb = round(path.stat().st_size / 1024 / 1024, 1)
        with path.open("rb") as fh:
            started = time.perf_counter()
            response = client.post(reverse("labeling:sampleset_import"), {"file": fh})
            upload_s = time.perf_counter() - started
        if response.status_code != 302:
            raise CommandError(f"upload refused: {response.content.decode()[:2000]}")
        preview_url = response["Location"]
        started = time.perf_counter()
        page = client.get(preview_url)
        preview_s = time.perf_counter() - started
        if page.status_code != 200:
            raise CommandError(f"preview failed: {page.status_code}")
        form = {
            "name": "bench_import",
            "text_column": "text",
            "id_column": "id",
            "label_column": "label",
            "max_chars": 20000,
            "delimiter": "comma",
        }
        started = time.perf_counter()
        response = client.post(preview_url, form)
        confirm_s = time.perf_counter() - started
        if response.status_code != 302:
            raise CommandError(f"confirm refused: {response.content.decode()[:2000]}")
        confirmed = time.perf_counter()
        sample_set = SampleSet.objects.get(name="bench_import", created_by=user, status="importing")
        if in_process:
            run_import(sample_set_id=sample_set.pk)  # the worker, if any, then skips it
        polls = 0
        while True:
            sample_set.refresh_from_db()
            if sample_set.status != SampleSetStatus.IMPORTING:
                break
            polls += 1
            if polls % 10 == 0:  # what the page's progress request costs, now and then
                client.get(reverse("labeling:sampleset_detail", args=[sample_set.pk]))
            time.sleep(0.1)
        import_s = time.perf_counter() - confirmed
        status, items = sample_set.status, sample_set.item_count
        error = sample_set.error
        sample_set.delete()
        if status != SampleSetStatus.READY:
            raise CommandError(f"the import failed: {error}")
        return {
            "items": items,
            "file_mb": size_mb,
            "upload_request_s": round(upload_s, 3),
            "preview_request_s": round(preview_s, 3),
            "confirm_request_s": round(confirm_s, 3),
            "background_import_s": round(import_s, 3),
            "items_per_s": round(items / import_s, 1),
            "database": connection.vendor,
            "worker": "in-process" if in_process else "celery worker on " + _broker(),
        }


def _broker() -> str:
    url = settings.CELERY_BROKER_URL
    return url.split("://", 1)[0] if url else "none"
