"""Gold history: every change of an item's gold under a policy, kept as a ``GoldChange`` row.

Whoever changes gold (a review decision, its edit or undo, a typed label, an audit) calls
``record_gold_changes`` in the same transaction, with the gold as it was and as it is now, so the
items page can show, per item, who changed it, when, old → new and from which source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from labeling.models import GoldChange


@dataclass(frozen=True)
class GoldTransition:
    """One item's gold before and after; a blank label means no gold (before: none yet;
    after: removed)."""

    item_id: int
    old_label: str
    old_source: str
    new_label: str
    new_source: str


def record_gold_changes(
    *,
    policy_id: int,
    transitions: Iterable[GoldTransition],
    by: Any,
    decision_id: int | None = None,
    note: str = "",
) -> list[GoldChange]:
    """Store the transitions that change something (same label and source is no change)."""
    rows = [
        GoldChange(
            policy_id=policy_id,
            item_id=t.item_id,
            old_label=t.old_label,
            new_label=t.new_label,
            old_source=t.old_source,
            new_source=t.new_source,
            decision_id=decision_id,
            changed_by=by if getattr(by, "pk", None) else None,
            note=note[:300],
        )
        for t in transitions
        if (t.old_label, t.old_source) != (t.new_label, t.new_source)
    ]
    return GoldChange.objects.bulk_create(rows)
