"""The agreement benchmark, run tiny: it refreshes once, finds the second refresh current, times
both pages with a bounded query count, prints one JSON object, and removes what it built."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from labeling.models import AgreementSnapshot, Job, ReviewVote

pytestmark = pytest.mark.django_db


def test_bench_agreement_prints_its_figures_and_leaves_nothing() -> None:
    out = io.StringIO()
    call_command("bench_agreement", tasks=40, pages=3, stdout=out)
    result = json.loads(out.getvalue())

    assert result["votes"] == 120
    assert (result["refresh_written"], result["refresh_again_written"]) == (2, 0)
    for name in ("job_page", "policy_page"):
        assert result[name]["p95_ms"] >= result[name]["p50_ms"] > 0
        assert result[name]["queries"] <= 10
    assert not (Job.objects.exists() or ReviewVote.objects.exists())
    assert not AgreementSnapshot.objects.exists()
