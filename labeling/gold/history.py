"""Gold history: every change of an item's gold under a policy, kept as a ``GoldChange`` row.

Whoever changes gold (a review decision, its edit or undo, a typed label, an audit) calls
``record_gold_changes`` in the same transaction, with the gold as it was and as it is now
(``labeling.gold.services.current_gold`` reads it), so the items page can show, per item, who
changed it, when, old → new and from which source.

The import's expected label is not recorded: it is fixed at import, so ``item_history``
derives its entry from the sample set (who imported it, when) and lists it first. Recording
it would write a row per imported item for what the set already says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labeling.models import GoldChange, GoldLabel, GoldSource, Item

HISTORY_SHOWN = 100  # newest changes shown per item; older ones are said to exist


@dataclass(frozen=True)
class GoldTransition:
    """One item's gold before and after; a blank label means no gold (before: none yet;
    after: removed)."""

    item_id: int
    old_label: str
    old_source: str
    new_label: str
    new_source: str
    # Set where one call records changes made by several decisions (carry-over): they win over
    # the call's ``decision_id`` and ``by``.
    decision_id: int | None = None
    changed_by_id: int | None = None


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
            decision_id=t.decision_id or decision_id,
            changed_by_id=t.changed_by_id or getattr(by, "pk", None),
            note=note[:300],
        )
        for t in transitions
        if (t.old_label, t.old_source) != (t.new_label, t.new_source)
    ]
    return GoldChange.objects.bulk_create(rows)


@dataclass(frozen=True)
class HistoryEntry:
    """One line of an item's gold history, oldest first."""

    at: datetime | None
    by: str  # the account's username; "" when no account is known
    old_label: str
    old_source: str
    new_label: str
    new_source: str
    note: str = ""
    decision_id: int | None = None
    kind: str = "change"  # "import": the expected label; "unrecorded": gold older than history


@dataclass(frozen=True)
class ItemHistory:
    """``imported`` (the expected label, if any), then ``changes`` oldest first; between them,
    when ``older_hidden``, changes too old to be listed."""

    item_id: int
    sample_set_name: str
    imported: HistoryEntry | None = None
    changes: list[HistoryEntry] = field(default_factory=list)
    older_hidden: bool = False

    @property
    def empty(self) -> bool:
        return self.imported is None and not self.changes


def item_history(*, policy_id: int, item_id: int, limit: int = HISTORY_SHOWN) -> ItemHistory:
    """The gold history of one item under a policy, oldest first: the import's expected label
    (from the sample set), then the newest ``limit`` recorded changes (three queries, each
    bounded: the item, its newest changes through the ``gold_change_item`` index, its gold
    row)."""
    item = (
        Item.objects.select_related("sample_set__created_by")
        .only(
            "expected_label",
            "sample_set__name",
            "sample_set__created_at",
            "sample_set__created_by__username",
        )
        .get(pk=item_id)
    )
    changes = list(
        GoldChange.objects.filter(policy_id=policy_id, item_id=item_id)
        .select_related("changed_by")
        .only(
            "changed_at",
            "changed_by__username",
            "old_label",
            "old_source",
            "new_label",
            "new_source",
            "note",
            "decision_id",
        )
        .order_by("-changed_at", "-id")[: limit + 1]
    )
    older_hidden = len(changes) > limit
    changes = changes[:limit][::-1]
    imported = None
    if item.expected_label is not None:
        imported = HistoryEntry(
            at=item.sample_set.created_at,
            by=item.sample_set.created_by.username,
            old_label="",
            old_source="",
            new_label=str(item.expected_label),
            new_source=GoldSource.IMPORT,
            kind="import",
        )
    entries = [
        HistoryEntry(
            at=c.changed_at,
            by=c.changed_by.username if c.changed_by else "",
            old_label=c.old_label,
            old_source=c.old_source,
            new_label=c.new_label,
            new_source=c.new_source,
            note=c.note,
            decision_id=c.decision_id,
        )
        for c in changes
    ]
    unrecorded = _unrecorded(policy_id, item_id, [*([imported] if imported else []), *entries])
    if unrecorded is not None:
        entries.append(unrecorded)
    return ItemHistory(
        item_id=item_id,
        sample_set_name=item.sample_set.name,
        imported=imported,
        changes=entries,
        older_hidden=older_hidden,
    )


def _unrecorded(policy_id: int, item_id: int, entries: list[HistoryEntry]) -> HistoryEntry | None:
    """A gold row the history does not end on (set before gold history was kept): said as
    such, with who set it and when, rather than left out."""
    gold = (
        GoldLabel.objects.filter(policy_id=policy_id, item_id=item_id)
        .select_related("decided_by")
        .only("label", "source", "updated_at", "decided_by__username")
        .first()
    )
    if gold is None:
        return None
    last = entries[-1] if entries else None
    if last is not None and (last.new_label, last.new_source) == (gold.label, gold.source):
        return None
    return HistoryEntry(
        at=gold.updated_at,
        by=gold.decided_by.username,
        old_label=last.new_label if last else "",
        old_source=last.new_source if last else "",
        new_label=gold.label,
        new_source=gold.source,
        kind="unrecorded",
    )
