"""``manage.py bench_explain`` at a tiny size: real workers explain its mismatches, it prints
its figures and leaves nothing behind (PostgreSQL and Redis, as the benchmark requires)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from labeling.management.commands.bench_explain import bench_policies
from labeling.models import ExplainRun, Item, Job
from tests.celery_workers import REDIS_URL
from worker.clauses import parse_clauses

pytestmark = pytest.mark.celery_worker


def test_the_bench_policy_has_thirty_clauses_each_reworded_in_the_twin() -> None:
    text_a, text_b = bench_policies()
    a, b = parse_clauses(text_a), parse_clauses(text_b)
    assert len(a) == len(b) == 30
    assert not {c.text for c in a} & {c.text for c in b}


@pytest.mark.django_db(transaction=True)
def test_bench_explain_prints_its_figures_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the benchmark runs on PostgreSQL and Redis only")
    out = io.StringIO()
    monkeypatch.setenv("COPE_BACKEND", "embedding")  # the CPU baseline, whatever is configured
    call_command("bench_explain", mismatches=3, broker=REDIS_URL, stdout=out)
    figures = json.loads(out.getvalue())
    assert figures["status"] == "succeeded" and figures["explained"] == 3
    assert figures["variants"] == 122 and figures["scores"] == 3 * 122
    assert figures["backend"] == "embedding" and figures["wall_seconds"] > 0
    assert 0 <= figures["outside_model_share"] <= 1 and figures["job_page_queries"] > 0
    assert sum(figures["verdicts"].values()) == 3
    assert not Job.objects.exists() and not Item.objects.exists()
    assert not ExplainRun.objects.exists()
