"""What the run engine calls when a what-if run finishes: its before -> after table.

``labeling.runs.finish_run`` dispatches here for kind whatif, under the run row's
lock, once the run's status is final. The table is drawn from the run's own scores, the job's
stored labels (to say whether the rescored A and B equal them) and gold as it stands now
(``current_gold``). A given-up chunk answered late reopens the run, and its second finish
writes the table again from every score recorded: figures are always over the items scored.

The reads grow with the run's own size (its items times at most four variants), never with
the data.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import transaction

from labeling.gold.services import current_gold
from labeling.models import ExplainChunk, ExplainRun, Label, RunKind
from labeling.run_scores import run_labels
from labeling.whatif.analysis import AFTER_B, WhatIfInput, whatif_table


def _run_items(run_id: int) -> list[int]:
    """The run's items in chunk order, each once. (Not ``labeling.probes.record``'s: that
    module dispatches finishes here, and this one must not import it back.)"""
    chunks = ExplainChunk.objects.filter(run_id=run_id).order_by("index")
    ids = (i for item_ids in chunks.values_list("item_ids", flat=True) for i in item_ids)
    return list(dict.fromkeys(int(i) for i in ids))


def _scores(run_id: int) -> dict[int, dict[str, int | None]]:
    return defaultdict(dict, run_labels([run_id]))


def _job_labels(job_id: int, ids: list[int]) -> dict[int, tuple[int | None, int | None]]:
    found: dict[int, dict[str, int | None]] = defaultdict(dict)
    rows = Label.objects.filter(job_id=job_id, item_id__in=ids).values_list(
        "item_id", "side", "label"
    )
    for item_id, side, label in rows:
        found[item_id][side] = label
    return {i: (found[i].get("A"), found[i].get("B")) for i in ids}


@transaction.atomic
def summarize_whatif(run_id: int) -> dict[str, Any]:
    """Recompute a what-if run's table from its scores; save it as the run's ``summary`` and
    return it."""
    run = ExplainRun.objects.select_related("job__version").get(pk=run_id)
    job = run.job
    if run.kind != RunKind.WHATIF or job is None:
        raise ValueError(f"run {run_id} is not a what-if run")
    ids = _run_items(run_id)
    affected = [int(i) for i in (run.summary or {}).get("affected_items", [])]
    gold = current_gold(policy_id=job.version.policy_id, item_ids=ids)
    table = whatif_table(
        WhatIfInput(
            items=ids,
            affected=affected,
            scores=_scores(run_id),
            job_labels=_job_labels(job.pk, ids),
            gold={i: g for i, (g, _) in gold.items()},
            twin_edited=any(s.get("key") == AFTER_B for s in run.variant_specs),
        )
    )
    summary = {"backend": run.backend, "weak": run.is_weak, **table, "affected_items": affected}
    ExplainRun.objects.filter(pk=run_id).update(summary=summary)
    return summary


def finish_whatif(run_id: int) -> None:
    """The engine's finisher for kind whatif (see the module docstring)."""
    summarize_whatif(run_id)
