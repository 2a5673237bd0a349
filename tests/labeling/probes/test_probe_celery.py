"""Real Celery: a probe through the broker, the model worker (``worker.explain_chunk`` on the CPU
baseline) and ``labeling.record_explain``; its summary against the formula by hand."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.models import ExplainRun
from labeling.probes import services, summary
from tests.labeling.conftest import retry_locked, wait_for
from tests.labeling.probes.conftest import (
    DEAD,
    PROBE_POLICY,
    TEXTS,
    formula_labels,
    make_probe_version,
)
from worker.probes import control_policy, drop_label, invert_label

pytestmark = pytest.mark.celery_worker


def _finished(pk: int) -> bool:
    return ExplainRun.objects.filter(pk=pk).exclude(status__in=("queued", "running")).exists()


@pytest.mark.django_db(transaction=True)
def test_real_workers_probe_a_version_as_the_formula_predicts(
    celery_workers: Any, author: Any, embedder: Any
) -> None:
    version = make_probe_version(author)
    run = retry_locked(lambda: services.start_probe(version, by=author))
    wait_for(lambda: _finished(run.pk), timeout=180, what="the probe", workers=celery_workers)
    run.refresh_from_db()
    assert run.status == "succeeded", (run.error, celery_workers.log_tail())
    assert run.backend == "embedding" and run.job_id is None
    assert summary.version_probe(version) == run
    got = run.summary
    p = formula_labels(embedder, PROBE_POLICY, TEXTS)
    assert got["positive"] == sum(p) and got["scored"] == len(TEXTS)
    off = formula_labels(embedder, control_policy(PROBE_POLICY), TEXTS)
    assert got["leakage"]["count"] == sum(off)
    for row in got["inversion"]:
        drop = formula_labels(embedder, drop_label(PROBE_POLICY, row["label"]), TEXTS)
        inv = formula_labels(embedder, invert_label(PROBE_POLICY, row["label"]), TEXTS)
        came_from = [i for i in range(len(TEXTS)) if p[i] == 1 and drop[i] == 0]
        assert row["expected"] == len(came_from) > 0
        assert row["flipped"] == sum(1 for i in came_from if inv[i] == 0) == len(came_from)
    assert DEAD in got["dead"]
