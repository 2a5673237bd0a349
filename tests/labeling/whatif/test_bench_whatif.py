"""``manage.py bench_whatif`` at a tiny size: real workers score the edit of the 30-clause
policy, it prints its before -> after figures and leaves nothing behind (PostgreSQL and Redis,
as the benchmark requires)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from labeling.models import ExplainRun, Item, Job, PolicyEvaluation
from policies.models import Policy
from tests.celery_workers import REDIS_URL

pytestmark = pytest.mark.celery_worker


@pytest.mark.django_db(transaction=True)
def test_bench_whatif_prints_its_figures_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the benchmark runs on PostgreSQL and Redis only")
    out = io.StringIO()
    monkeypatch.setenv("COPE_BACKEND", "embedding")  # the CPU baseline, whatever is configured
    call_command("bench_whatif", items=10, mismatches=3, gold=8, broker=REDIS_URL, stdout=out)
    figures = json.loads(out.getvalue())
    assert figures["status"] == "succeeded" and figures["scored"] == figures["items"] == 10
    assert figures["affected"] == 3 and figures["gold"] == 8
    assert figures["variants"] == 3 and figures["scores"] == 30
    assert figures["backend"] == "embedding" and figures["table_seconds"] > 0
    assert figures["model_seconds"] > 0 and 0 <= figures["outside_model_share"] <= 1
    assert all(value is not None for value in figures["agreement"])
    assert not Job.objects.exists() and not Item.objects.exists()
    assert not ExplainRun.objects.exists() and not PolicyEvaluation.objects.exists()
    assert not Policy.objects.exists()
