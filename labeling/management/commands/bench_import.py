"""Time a sample-set import: ``python manage.py bench_import --items 100000`` prints one JSON."""

from __future__ import annotations

import csv
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.test import override_settings

from labeling.importing import import_sample_set, preview_upload, store_upload

WORDS = (
    "the a policy content user post comment reply thread insult threat idea work public "
    "person target abuse harm speech review label model report team lisbon weather"
).split()


class _File:
    """Enough of an UploadedFile for ``store_upload``."""

    def __init__(self, path: Path) -> None:
        self.path, self.name, self.size = path, path.name, path.stat().st_size

    def chunks(self, chunk_size: int = 1 << 20) -> Any:
        with self.path.open("rb") as fh:
            while chunk := fh.read(chunk_size):
                yield chunk


class Command(BaseCommand):
    help = "Generate a CSV of N items, import it through the real service, print timings as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=100_000)
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        n = options["items"]
        rng = random.Random(options["seed"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.csv"
            with path.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["id", "text", "label", "source"])
                for i in range(n):
                    text = " ".join(rng.choices(WORDS, k=rng.randint(8, 30)))
                    writer.writerow([f"item-{i}", text, rng.randint(0, 1), "bench"])
            user, _ = get_user_model().objects.get_or_create(username="bench-import")
            with override_settings(DATA_DIR=Path(tmp)):
                upload = store_upload(_File(path))  # type: ignore[arg-type]
                started = time.perf_counter()
                preview = preview_upload(upload)
                sample_set = import_sample_set(
                    upload=upload,
                    name="bench_import",
                    by=user,
                    text_column=preview.text_column,
                    id_column=preview.id_column,
                    label_column=preview.label_column,
                )
                seconds = time.perf_counter() - started
            items = sample_set.item_count
            sample_set.delete()
        self.stdout.write(
            json.dumps(
                {
                    "items": items,
                    "seconds": round(seconds, 3),
                    "items_per_s": round(items / seconds, 1),
                    "database": connection.vendor,
                }
            )
        )
