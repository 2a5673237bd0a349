"""What pages (and suggestion ranking) read about what-if runs: the run's ``summary`` JSON,
written once when the run finishes, and one query for the texts of the items listed.
Never score rows: a page costs the same whatever the size of the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from labeling.models import ExplainRun, ExplainStatus, Item, RunKind
from policies.models import Version

FINISHED = (ExplainStatus.SUCCEEDED, ExplainStatus.PARTIAL)
CHANGE_KINDS = ("fixed", "broken", "other")


def version_whatifs(version: Version) -> QuerySet[ExplainRun]:
    """The version's what-if runs, newest first (suggested candidates included: ``parent``)."""
    return ExplainRun.objects.filter(version=version, kind=RunKind.WHATIF).order_by("-pk")


@dataclass(frozen=True)
class WhatIfView:
    """A what-if run as a page shows it. ``table`` is the run's summary once it finished
    (succeeded or partial), else empty; ``changed`` the listed changes with each item's
    text, by kind (fixed, broken, other)."""

    run: ExplainRun
    finished: bool
    table: dict[str, Any]
    changed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def progress(self) -> tuple[int, int]:
        """(items scored or failed so far, items in the run)."""
        return self.run.items_done + self.run.items_failed, self.run.items_total


def whatif_view(run: ExplainRun) -> WhatIfView:
    """The run's table and its changed items with their texts (one query for the texts)."""
    finished = run.status in FINISHED and "whole" in (run.summary or {})
    if not finished:
        return WhatIfView(run=run, finished=False, table={})
    table = run.summary
    changes = table.get("changed", {})
    ids = {row["item"] for kind in CHANGE_KINDS for row in changes.get(kind, [])}
    texts = dict(Item.objects.filter(pk__in=ids).order_by().values_list("pk", "text"))
    changed = {
        kind: [{**row, "text": texts.get(row["item"], "")} for row in changes.get(kind, [])]
        for kind in CHANGE_KINDS
    }
    return WhatIfView(run=run, finished=True, table=table, changed=changed)
