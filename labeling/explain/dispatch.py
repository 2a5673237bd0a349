"""Flow control of explain runs: which chunks go to the model workers, sending, giving up.

The jobs' rules (``labeling.jobs.dispatch``): at most ``COPE_CHUNKS_IN_FLIGHT`` chunks of a
run out at a time, each recorded result sends the run's next, and every writer of a run's chunk
statuses first locks the run row (``select_for_update``), so "no chunk is queued any more"
cannot change between the check and the finish. A chunk carries a slice of the items and the
run's distinct variants: an attribution run's are every variant of its job's two wordings
(``job_variants``), a probe or carve-out run's are its own (``ExplainRun.variant_specs``), and
a chunk with ``variant_keys`` carries only those.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from labeling.explain import broker
from labeling.models import (
    ChunkStatus,
    ExplainChunk,
    ExplainItem,
    ExplainRun,
    ExplainStatus,
    ExplainVerdict,
    Item,
    RunKind,
)
from worker.contract import ExplainRequest, ScoreItem, VariantSpec
from worker.variants import Variant, build_variants, distinct

log = logging.getLogger(__name__)

ACTIVE = (ExplainStatus.QUEUED, ExplainStatus.RUNNING)


@functools.lru_cache(maxsize=8)
def job_variants(text_a: str, text_b: str) -> tuple[Variant, ...]:
    """Every variant of two wordings (``worker.variants.build_variants``), built once per
    process for the texts a run sends again and again."""
    return tuple(build_variants(text_a, text_b))


def lock_run(run_id: int) -> tuple[str, int | None, str] | None:
    """Lock the run row; (its status, its job id (None for a probe), its kind), or None when
    it is gone."""
    # Ordered by pk: the model's default ordering joins the (nullable) job, and PostgreSQL
    # refuses FOR UPDATE on the nullable side of an outer join.
    return (
        ExplainRun.objects.select_for_update()
        .filter(pk=run_id)
        .order_by("pk")
        .values_list("status", "job_id", "kind")
        .first()
    )


def run_variants(run_id: int) -> list[VariantSpec] | None:
    """The distinct variants a run scores (None when the run is gone)."""
    row = (
        ExplainRun.objects.filter(pk=run_id)
        .values_list("kind", "job__text_a", "job__text_b", "variant_specs")
        .first()
    )
    if row is None:
        return None
    kind, text_a, text_b, specs = row
    if kind == RunKind.ATTRIBUTION:
        return [VariantSpec(v.key, v.policy) for v in distinct(job_variants(text_a, text_b))]
    return [VariantSpec(str(s["key"]), str(s["policy"])) for s in specs]


Chunk = tuple[list[int], list[str] | None]  # item ids, and the variant keys (None: all)


def next_attempt(**filters: Any) -> int:
    """The next ``attempt`` among the runs ``filters`` select (the caller holds the lock that
    serialises the numbering: the job row for attribution, the version row for the others)."""
    last = ExplainRun.objects.filter(**filters).aggregate(n=Max("attempt"))["n"]
    return (last or 0) + 1


def create_run(*, chunks: list[Chunk], **fields: Any) -> ExplainRun:
    """A running run and its chunks, its first chunks sent once committed: every kind starts
    this way. ``fields`` are the run's own (kind, job or version, attempt, variants, ...); the
    caller is inside ``transaction.atomic()``."""
    run = ExplainRun.objects.create(
        status=ExplainStatus.RUNNING,
        items_total=sum(len(ids) for ids, _ in chunks),
        chunk_count=len(chunks),
        started_at=timezone.now(),
        **fields,
    )
    ExplainChunk.objects.bulk_create(
        [
            ExplainChunk(run=run, index=n, item_ids=ids, variant_keys=keys)
            for n, (ids, keys) in enumerate(chunks)
        ]
    )
    lock_run(run.pk)
    claim_next_chunks(run.pk)
    return run


def claim_next_chunks(run_id: int) -> int:
    """Mark the run's next unsent chunks sent, up to ``COPE_CHUNKS_IN_FLIGHT`` in flight, and
    send them once committed. The caller holds the run row's lock. Returns how many."""
    queued = ExplainChunk.objects.filter(run_id=run_id, status=ChunkStatus.QUEUED)
    window = int(settings.COPE_CHUNKS_IN_FLIGHT)
    # The unsent ones first: once a run's last chunk is out, each answer finds none, and
    # counting what is in flight would be a round trip for nothing.
    unsent = queued.filter(sent_at__isnull=True).order_by("index").values_list("pk", flat=True)
    ids = list(unsent[:window])
    if ids:
        free = window - queued.filter(sent_at__isnull=False).count()
        ids = ids[: max(free, 0)]
    if ids:
        ExplainChunk.objects.filter(pk__in=ids).update(
            sent_at=timezone.now(), attempts=F("attempts") + 1
        )
        transaction.on_commit(functools.partial(send_chunks, run_id, ids))
    return len(ids)


def fill_window(run_id: int) -> int:
    """Send an active run's next chunks if fewer than the window are out."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run is None or run[0] not in ACTIVE:
            return 0
        return claim_next_chunks(run_id)


def send_chunks(run_id: int, chunk_ids: list[int]) -> int:
    """Send chunks already marked sent, with every distinct variant and their items' texts. A
    broker that refuses is logged, not raised: the chunks look lost and are sent again."""
    started = time.perf_counter()
    specs = run_variants(run_id)
    if specs is None:
        return 0
    chunks = list(
        ExplainChunk.objects.filter(pk__in=chunk_ids, status=ChunkStatus.QUEUED)
        .order_by("index")
        .values_list("pk", "item_ids", "attempts", "variant_keys")
    )
    wanted = {i for _, ids, _, _ in chunks for i in ids}
    texts = dict(Item.objects.filter(pk__in=wanted).order_by().values_list("pk", "text"))
    sent = 0
    try:
        for pk, item_ids, attempts, keys in chunks:
            request = ExplainRequest(
                run_id=run_id,
                chunk_id=pk,
                variants=specs if keys is None else [v for v in specs if v.key in keys],
                items=[ScoreItem(i, texts[i]) for i in item_ids if i in texts],
                attempt=max(1, attempts),
            )
            broker.send_explain_request(request.to_dict())
            sent += 1
    except Exception:
        log.warning("explain run %s: the broker refused chunks; they will be re-sent", run_id)
    ExplainRun.objects.filter(pk=run_id).update(
        bookkeeping_seconds=F("bookkeeping_seconds") + (time.perf_counter() - started)
    )
    return sent


def fail_items(run_id: int, job_id: int, item_ids: list[int], error: str) -> None:
    """Record items a run could not explain (an item explained before keeps its conclusion)."""
    explained = set(
        ExplainItem.objects.filter(job_id=job_id, item_id__in=item_ids)
        .exclude(verdict=ExplainVerdict.FAILED)
        .values_list("item_id", flat=True)
    )
    rows = [
        ExplainItem(
            job_id=job_id, item_id=i, run_id=run_id, verdict=ExplainVerdict.FAILED, error=error
        )
        for i in item_ids
        if i not in explained
    ]
    ExplainItem.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["job", "item"],
        update_fields=["run", "verdict", "error"],
    )


def give_up_on_chunks(
    run_id: int, job_id: int | None, chunks: list[tuple[int, list[int]]], cap: int
) -> None:
    """Fail queued chunks sent ``cap`` times without an answer (the run row is locked). Only
    an attribution run (one with a job) records its items as failed conclusions."""
    error = (
        f"Sent to the workers {cap} times without an answer (COPE_MAX_CHUNK_ATTEMPTS={cap}). "
        "A worker may be dying on it (out of memory, a CUDA error): check the model worker's "
        "log, then "
        + ("explain the remaining mismatches again." if job_id else "start the run again.")
    )
    ExplainChunk.objects.filter(pk__in=[pk for pk, _ in chunks], status=ChunkStatus.QUEUED).update(
        status=ChunkStatus.FAILED, finished_at=timezone.now(), error=error
    )
    items = [i for _, ids in chunks for i in ids]
    if job_id is not None:
        fail_items(run_id, job_id, items, error)
    ExplainRun.objects.filter(pk=run_id).update(
        chunks_failed=F("chunks_failed") + len(chunks),
        items_failed=F("items_failed") + len(items),
        error=error,
    )
