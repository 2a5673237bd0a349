"""Real Celery: a real job on the CPU baseline, then its attribution through the broker, the
model worker (``worker.explain_chunk``) and ``labeling.record_explain``.

The twin differs from A in exactly one criterion, so every mismatch must be attributed to it
by the swap test; and the removal test must name exactly the criteria that the baseline's
formula (``worker.embedding``'s module docstring), computed here from the embeddings, says
each label depends on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from labeling.explain import services
from labeling.jobs import services as job_services
from labeling.models import ExplainFinding, ExplainItem, ExplainRun, FindingRole, JobStatus
from tests.conftest import POLICY_TEXT
from tests.labeling.conftest import make_sample_set, make_version, retry_locked, wait_for
from worker.config import default_embedding_model
from worker.embedding import TAU, SentenceEmbedder, extract_criteria

pytestmark = pytest.mark.celery_worker

CHANGED = "label/HA1/includes/1"
TWIN = POLICY_TEXT.replace(
    "- Insults aimed at a **Target**.", "- Recipes for baking sourdough bread at home."
)
TEXTS = [
    "You are a worthless idiot, Sam, and everyone hates you.",
    "Shut up, you pathetic loser Alex.",
    "I will hurt you, Jordan, if you show up tomorrow.",
    "Lovely weather in Lisbon today.",
    "The paper's methodology is weak and the conclusions do not follow.",
    "Jo, you are a disgusting moron and an insult to your family.",
    "Our team shipped the release on time.",
    "Critique of the minister's published budget: the numbers do not add up.",
]


def expected_necessary(policy: str, texts: list[str]) -> list[set[str]]:
    """Per text, the criteria whose removal flips the baseline's label, from its formula:
    margin = max inc - max(max exc, TAU) (-1 for no Excludes), label 1 iff margin >= 0."""
    _, includes, excludes = extract_criteria(policy)
    embedder = SentenceEmbedder(default_embedding_model())
    content = embedder.embed(texts)
    inc = content @ embedder.embed([c.text for c in includes]).T
    exc = content @ embedder.embed([c.text for c in excludes]).T

    def label(row: int, keep_inc: list[int], keep_exc: list[int]) -> bool:
        worst = max(float(exc[row, keep_exc].max()) if keep_exc else -1.0, TAU)
        return float(inc[row, keep_inc].max()) - worst >= 0

    out = []
    for row in range(len(texts)):
        every_inc, every_exc = list(range(len(includes))), list(range(len(excludes)))
        base = label(row, every_inc, every_exc)
        found = set()
        for i in every_inc:
            if label(row, [j for j in every_inc if j != i], every_exc) != base:
                found.add(f"label/HA1/includes/{i + 1}")
        for x in every_exc:
            if label(row, every_inc, [j for j in every_exc if j != x]) != base:
                found.add(f"label/HA1/excludes/{x + 1}")
        out.append(found)
    assert np.isfinite(inc).all()
    return out


def _finished(model: Any, pk: int) -> bool:
    return model.objects.filter(pk=pk).exclude(status__in=("queued", "running")).exists()


@pytest.mark.django_db(transaction=True)
def test_real_workers_attribute_every_mismatch_to_the_one_changed_criterion(
    celery_workers: Any, author: Any
) -> None:
    version = make_version(author, twin=TWIN)
    sample_set = make_sample_set(author, TEXTS)
    job = job_services.start_job(
        version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=8
    )
    wait_for(
        lambda: _finished(type(job), job.pk), timeout=120, what="the job", workers=celery_workers
    )
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, celery_workers.log_tail()
    mismatches = services.mismatch_ids(job)
    assert mismatches, "the changed criterion must change some labels"

    # The finished job started explaining its mismatches by itself, once.
    runs = ExplainRun.objects.filter(job=job)
    wait_for(lambda: runs.exists(), timeout=30, what="the automatic run", workers=celery_workers)
    run = runs.get()
    assert run.requested_by is None and run.items_total == len(mismatches)
    assert retry_locked(lambda: services.explain_after_job(job.pk)) is None
    wait_for(
        lambda: _finished(ExplainRun, run.pk), timeout=180, what="the run", workers=celery_workers
    )
    run.refresh_from_db()
    assert run.status == "succeeded", (run.error, celery_workers.log_tail())
    assert run.backend == "embedding" and run.weak_backend and run.items_done == len(mismatches)
    conclusions = ExplainItem.objects.filter(job=job)
    assert sorted(c.item_id for c in conclusions) == mismatches
    assert {(c.verdict, c.clause_a, c.clause_b) for c in conclusions} == {
        ("decided", CHANGED, CHANGED)
    }

    # Every item, agreeing ones too: removal names exactly what the formula says.
    items = list(sample_set.items.order_by("row_number"))
    every = retry_locked(
        lambda: services.start_explain(job, author, item_ids=[i.pk for i in items])
    )
    wait_for(
        lambda: _finished(ExplainRun, every.pk),
        timeout=180,
        what="the second run",
        workers=celery_workers,
    )
    every.refresh_from_db()
    assert every.status == "succeeded", every.error
    for side, text in (("A", POLICY_TEXT), ("B", TWIN)):
        expected = expected_necessary(text, [i.text for i in items])
        found = ExplainFinding.objects.filter(job=job, side=side, role=FindingRole.NECESSARY)
        for item, want in zip(items, expected, strict=True):
            got = set(found.filter(item=item).values_list("clause", flat=True))
            assert got == want, (side, item.text, got, want)
    assert any(expected_necessary(POLICY_TEXT, [i.text for i in items]))
