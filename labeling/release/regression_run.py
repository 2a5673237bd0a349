"""Which clause decides each gold verdict that changed since the last finalized version.

A REGRESSION run (``RunKind.REGRESSION``, on the run engine of ``labeling.explain``) scores the
changed gold items of a version's regression diff (``labeling.release.regression``) under every
distinct variant of the two texts, the new one as side A and the last finalized one as side B
(``worker.variants.build_variants``). The swap test (``labeling.explain.analysis.explain_item``)
then names the clause of the new text whose old wording gives the item back its old verdict:
the clause that decides the change. Its finish (``finish_regression``, called by the engine
through ``labeling.runs.finish_run``) writes the run's ``summary``:
``{"items", "explained", "backend", "weak", "clauses": {item id: {"verdict", "clause",
"where", "other", "effect"}}}``.

One run per (version, baseline): the finalize panel starts it the first time it finds changed
gold items, and again only when the last one failed or was cancelled.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import transaction

from labeling.explain.analysis import Score, explain_item
from labeling.explain.dispatch import create_run, job_variants, next_attempt
from labeling.gold.services import current_gold
from labeling.models import (
    ExplainRun,
    ExplainStatus,
    ExplainVerdict,
    Item,
    RunKind,
)
from labeling.release.regression import Regression
from labeling.run_scores import run_scores
from policies.models import Version
from worker.clauses import parse_clauses
from worker.variants import distinct

# Changed gold items explained per run: the broken ones first, then the fixed.
MAX_ITEMS = 500
# Scores per chunk (items times variants), as the engine's attribution runs send. Not imported
# from ``labeling.explain.services``: that module imports the engine's record, which calls
# ``finish_regression`` through ``labeling.probes.record``, and the import would be a cycle.
SCORES_PER_CHUNK = 4000
# A run in one of these is not started again for the same (version, baseline).
_RETRY_AFTER = (ExplainStatus.FAILED, ExplainStatus.CANCELLED)


def latest_run(version: Version, baseline: Version) -> ExplainRun | None:
    return (
        ExplainRun.objects.filter(
            version=version, baseline_version=baseline, kind=RunKind.REGRESSION
        )
        .order_by("-attempt")
        .first()
    )


def start_regression_run(diff: Regression, *, version: Version, by: Any) -> ExplainRun | None:
    """The regression run of (version, baseline): the existing one, or a new one when there is
    none yet or the last failed. None when the diff changed no gold verdict."""
    baseline = diff.baseline
    ids = diff.changed_gold_ids[:MAX_ITEMS]
    if baseline is None or not diff.compared or not ids:
        return None
    variants = distinct(job_variants(version.text, baseline.text))
    size = max(1, SCORES_PER_CHUNK // len(variants))
    with transaction.atomic():
        # The version row's lock: two panels opened at once start one run.
        Version.objects.select_for_update().filter(pk=version.pk).order_by("pk").values(
            "pk"
        ).first()
        last = latest_run(version, baseline)
        if last is not None and last.status not in _RETRY_AFTER:
            return last
        return create_run(
            chunks=[(ids[i : i + size], None) for i in range(0, len(ids), size)],
            kind=RunKind.REGRESSION,
            version=version,
            baseline_version=baseline,
            attempt=next_attempt(version=version, kind=RunKind.REGRESSION),
            requested_by=by,
            variant_specs=[{"key": v.key, "policy": v.policy} for v in variants],
            variants=len(variants),
            chunk_size=size,
        )


def _scores(run_id: int) -> dict[int, dict[str, Score]]:
    out: dict[int, dict[str, Score]] = defaultdict(dict)
    for s in run_scores([run_id]):
        out[s.item_id][s.key] = Score(s.label, s.p1, s.margin, s.error)
    return out


@transaction.atomic
def finish_regression(run_id: int) -> dict[str, Any]:
    """Each scored item's deciding clause (the swap test) into the run's summary; returns it.
    Reads the run's own scores only (at most ``MAX_ITEMS`` items times its variants)."""
    run = ExplainRun.objects.select_related("version", "baseline_version").get(pk=run_id)
    if run.kind != RunKind.REGRESSION or run.version is None or run.baseline_version is None:
        raise ValueError(f"run {run_id} is not a regression run")
    new_text, old_text = run.version.text, run.baseline_version.text
    variants = job_variants(new_text, old_text)
    where = {c.key: c.where for c in parse_clauses(new_text)}
    scores = _scores(run_id)
    golds = current_gold(policy_id=run.version.policy_id, item_ids=list(scores))
    clauses: dict[str, dict[str, Any]] = {}
    for item_id, item_scores in scores.items():
        gold = golds[item_id][0]
        c = explain_item(variants, item_scores, int(gold) if gold in ("0", "1") else None)
        clauses[str(item_id)] = {
            "verdict": c.verdict,
            "clause": c.clause_a,
            "where": where.get(c.clause_a, c.clause_a),
            "other": c.clause_b,
            "effect": c.effect,
            "error": c.error,
        }
    summary = {
        "items": run.items_total,
        "explained": sum(1 for c in clauses.values() if c["verdict"] != ExplainVerdict.FAILED),
        "backend": run.backend,
        "weak": run.is_weak,
        "clauses": clauses,
    }
    ExplainRun.objects.filter(pk=run_id).update(summary=summary)
    return summary


def clauses_of(run: ExplainRun | None) -> dict[str, dict[str, Any]]:
    """{item id: its clause record} of a finished run; {} while it runs."""
    if run is None or run.status not in (ExplainStatus.SUCCEEDED, ExplainStatus.PARTIAL):
        return {}
    clauses = (run.summary or {}).get("clauses")
    return clauses if isinstance(clauses, dict) else {}


def with_clauses(changed: dict[str, Any], run: ExplainRun | None) -> dict[str, Any]:
    """The diff's changed lists, each fixed and broken item with its deciding clause when the
    run found one (``clause`` "" when none decides; absent while being explained)."""
    found = clauses_of(run)
    out = dict(changed)
    for kind in ("fixed", "broken"):
        rows = []
        for row in changed.get(kind, []):
            record = found.get(str(row["item"]))
            if record is not None:
                row = {
                    **row,
                    "clause": record["clause"],
                    "where": record["where"],
                    "explained": record["verdict"] != ExplainVerdict.FAILED,
                }
            rows.append(row)
        out[kind] = rows
    return out


# Changed items shown on the finalize panel per kind (the evidence keeps up to LIST_CAP).
SHOWN = 50


def shown_items(changed: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The fixed and broken items the panel lists, each with its content (one read)."""
    kinds = {kind: list(changed.get(kind, []))[:SHOWN] for kind in ("broken", "fixed")}
    ids = [int(row["item"]) for rows in kinds.values() for row in rows]
    texts = dict(Item.objects.filter(pk__in=ids).values_list("pk", "text")) if ids else {}
    return {
        kind: [{**row, "text": texts.get(int(row["item"]), "")} for row in rows]
        for kind, rows in kinds.items()
    }


def panel_view(diff: Regression, version: Version, *, by: Any) -> dict[str, Any]:
    """What the finalize panel shows of the diff; starts the clause run the first time the
    diff has changed gold items (``start_regression_run``: once per version and baseline)."""
    run = start_regression_run(diff, version=version, by=by) if diff.compared else None
    changed = with_clauses(diff.changed, run)
    shown = shown_items(changed)
    return {
        "diff": diff,
        "data": {**diff.to_dict(), "changed": changed},
        "run": run,
        "explaining": run is not None and run.is_active,
        "changed": changed,
        "shown": shown,
        "more": {kind: changed.get(f"{kind}_count", 0) - len(rows) for kind, rows in shown.items()},
    }
