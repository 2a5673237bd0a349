"""Measure the Try box's round trip: web → broker → model worker → web.

``python manage.py bench_try`` starts a real model worker subprocess (as ``bin/run-studio``
does: prefork, one child, ``-Q gpu_live,gpu``) on the embedded default's filesystem broker and
then on Redis, sends ``--n`` Try requests (``--items`` contents under the demo hate-speech policy
A and its twin B, exactly what the Try button sends) after a warm-up, and prints one JSON object:
p50/p95 of the round trip next to the model time alone (the same scorer loaded in this process,
no broker) and the worker-reported model time, per broker. The backend is the worker's
(``COPE_BACKEND``, the CPU embedding baseline by default). ``--bulk`` also measures while
``--bulk`` chunks of 128 items wait on the ``gpu`` queue (a job running).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from cope_studio.celery import app
from labeling.api import live
from labeling.management.commands._live_bench import BrokerSetup, percentiles
from worker.config import WorkerConfig
from worker.contract import GPU_QUEUE, SCORE_CHUNK_TASK, ScoreItem, ScoreRequest
from worker.loader import load_scorer

DEMO = Path(__file__).resolve().parents[3] / "cope_studio" / "demo"
CONTENTS = [
    "People like you should be driven out of this country.",
    "I disagree with the new immigration bill; the numbers do not add up.",
    "Those people are animals and deserve what is coming.",
    "Great match last night, the keeper was unreal.",
    "Go back to where you came from, nobody wants your kind here.",
    "The study's sample was too small to support its conclusion.",
    "What a lovely morning for a walk by the river.",
    "They are vermin, every last one of them.",
]


def texts() -> tuple[str, str]:
    base = DEMO / "policies" / "hate-speech-strict"
    return base.with_suffix(".md").read_text(), Path(f"{base}.twin.md").read_text()


class Command(BaseCommand):
    help = "p50/p95 of the Try round trip on the filesystem broker and Redis, beside model time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--n", type=int, default=40)
        parser.add_argument("--items", type=int, default=4)
        parser.add_argument("--brokers", default="filesystem,redis")
        parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
        parser.add_argument("--bulk", type=int, default=0, help="bulk chunks queued meanwhile")

    def handle(self, *args: Any, **opts: Any) -> None:
        text_a, text_b = texts()
        contents = (CONTENTS * 40)[: opts["items"]]
        report: dict[str, Any] = {
            "benchmark": "bench_try",
            "items_per_try": len(contents),
            "tries": opts["n"],
            "model_alone": self._model_alone(text_a, text_b, contents, opts["n"]),
        }
        for kind in [k.strip() for k in opts["brokers"].split(",") if k.strip()]:
            with BrokerSetup(kind, opts["redis_url"]) as setup:
                report[kind] = self._round_trips(setup, text_a, text_b, contents, opts)
        self.stdout.write(json.dumps(report))

    def _model_alone(self, a: str, b: str, contents: list[str], n: int) -> dict[str, Any]:
        """The scorer the worker loads, called directly: A then B, as one Try."""
        scorer = load_scorer(WorkerConfig.from_env())
        for _ in range(3):
            scorer.score(a, contents), scorer.score(b, contents)
        times = []
        for _ in range(n):
            started = time.perf_counter()
            scorer.score(a, contents)
            scorer.score(b, contents)
            times.append(time.perf_counter() - started)
        return {
            "backend": scorer.info.backend,
            "model_id": scorer.info.model_id,
            **percentiles(times),
        }

    def _round_trips(
        self, setup: BrokerSetup, a: str, b: str, contents: list[str], opts: dict[str, Any]
    ) -> dict[str, Any]:
        # Measure slow round trips rather than fail them (a loaded machine).
        settings.COPE_LIVE_TIMEOUT = max(float(settings.COPE_LIVE_TIMEOUT), 300.0)
        for _ in range(3):  # warm: model loaded, policy criteria cached, worker polling fast
            live.try_contents(text_a=a, text_b=b, contents=contents)
        trips, model, overhead = self._measure(a, b, contents, opts["n"])
        out: dict[str, Any] = {
            "round_trip": percentiles(trips),
            "worker_model_time": percentiles(model),
            "round_trip_minus_model": percentiles(overhead),
        }
        if opts["bulk"]:
            self._queue_bulk(a, opts["bulk"])
            trips, model, overhead = self._measure(a, b, contents, max(5, opts["n"] // 4))
            out["with_bulk_queued"] = {
                "bulk_chunks": opts["bulk"],
                "round_trip": percentiles(trips),
                "round_trip_minus_model": percentiles(overhead),
            }
        return out

    def _measure(
        self, a: str, b: str, contents: list[str], n: int
    ) -> tuple[list[float], list[float], list[float]]:
        trips, model, overhead = [], [], []
        for _ in range(n):
            result = live.try_contents(text_a=a, text_b=b, contents=contents)
            if result.a.error or (result.b and result.b.error):
                raise RuntimeError(result.a.error or (result.b.error if result.b else ""))
            seconds = sum(s.answer.model_seconds for s in (result.a, result.b) if s and s.answer)
            trips.append(result.seconds)
            model.append(seconds)
            overhead.append(result.seconds - seconds)
        return trips, model, overhead

    def _queue_bulk(self, policy: str, chunks: int) -> None:
        items = [ScoreItem(i, CONTENTS[i % len(CONTENTS)]) for i in range(128)]
        for chunk in range(chunks):
            request = ScoreRequest(
                job_id=10**9, chunk_id=chunk, side="A", policy=policy, items=items
            )
            app.send_task(SCORE_CHUNK_TASK, args=[request.to_dict()], queue=GPU_QUEUE)
        time.sleep(0.5)
