"""``manage.py bench_probe`` at a tiny size: real workers probe the 30-clause policy, it prints
its figures and leaves nothing behind (PostgreSQL and Redis, as the benchmark requires)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from labeling.management.commands.bench_explain import bench_policies
from labeling.models import ExplainRun, Item, Job, PolicyEvaluation
from labeling.probes.record import probe_variants
from policies.models import Policy
from tests.celery_workers import REDIS_URL
from worker.variants import distinct

pytestmark = pytest.mark.celery_worker


@pytest.mark.django_db(transaction=True)
def test_bench_probe_prints_its_figures_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the benchmark runs on PostgreSQL and Redis only")
    out = io.StringIO()
    monkeypatch.setenv("COPE_BACKEND", "embedding")  # the CPU baseline, whatever is configured
    call_command("bench_probe", items=3, runs=4, broker=REDIS_URL, stdout=out)
    figures = json.loads(out.getvalue())
    variants = len(distinct(probe_variants(bench_policies()[0])))
    assert figures["status"] == "succeeded" and figures["scored"] == figures["items"] == 3
    assert figures["variants"] == variants and figures["scores"] == 3 * variants
    assert figures["backend"] == "embedding" and figures["wall_seconds"] > 0
    assert 0 <= figures["outside_model_share"] <= 1 and figures["scores_per_s"] > 0
    assert figures["positive"] is not None and figures["dead"] >= 0
    # Probed four times on the same workers: the median of the three warm runs reported, each
    # warm run's share listed, the first (just-started workers) beside them, each counting only
    # its own bookkeeping tasks (in the suite, the session's workers share the broker and may
    # take some: the figures say how many it saw).
    first = figures["first_run"]
    assert figures["runs"] == 4 and first["status"] == "succeeded"
    shares = figures["warm_shares"]
    assert len(shares) == 3 and figures["outside_model_share"] == sorted(shares)[1]
    assert first["scores"] == figures["scores"] and first["wall_seconds"] > 0
    assert 0 <= first["outside_model_share"] <= 1
    for run in (first, figures):
        assert 0 <= run["bookkeeping_tasks_logged"] <= figures["chunks"]
        assert (run["web_seconds"] > 0) == (run["bookkeeping_tasks_logged"] > 0)
    assert not Job.objects.exists() and not Item.objects.exists()
    assert not ExplainRun.objects.exists() and not PolicyEvaluation.objects.exists()
    assert not Policy.objects.exists()
