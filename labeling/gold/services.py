"""Gold labels: the trusted label of (policy, item), and how right each side of a job is.

Gold has four sources (``GoldSource``):

* **import**: the item's expected-label column (``Item.expected_label``). It counts as gold for
  every policy whose job ran on the item. It needs no row: it is the oldest of the four (it
  exists from the import on), so any ``GoldLabel`` row for the (policy, item) is newer and wins;
* **review**: a reviewer's "correct label" (``labeling.review.decisions.submit_decision``);
* **typed**: a label typed on a job's items page (``set_gold``);
* **audit**: a label set by a gold audit (``set_gold`` with that source).

Every change is kept in the gold history (``labeling.gold.history``): who, when, old → new and
the source. The import's expected label has no history row: the history shows it first, from
the sample set (who imported it, when).

One ``GoldLabel`` row per (policy, item): a newer decision or typed label replaces it, so the
newest wins, and its source is kept. "Policy can't decide" (``u``) is a gold answer but not a
0/1 label: it is counted apart and never scored.

Scores are computed with one grouped SQL aggregate per job (never every label in Python).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypedDict

from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    FilteredRelation,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast, Coalesce
from django.db.models.lookups import IsNull
from django_stubs_ext import WithAnnotations

from labeling.gold.history import GoldTransition, record_gold_changes
from labeling.models import GoldChoice, GoldLabel, GoldSource, Item, Job, Label, Side
from labeling.scoring import FEW_GOLD, GoldScore, score_from_counts
from policies.models import Policy


class GoldError(ValueError):
    """A gold label cannot be set; the message is shown to the user."""


def lock_gold_of(item_id: int) -> None:
    """Make gold writers of one item take turns (PostgreSQL; SQLite lets one writer in at a
    time), so each history row starts from the gold the previous writer left.

    The item's row is locked: it is never written after import. Only that row: the statement
    is unordered, since ``Item``'s default ordering joins its sample set and ``FOR UPDATE``
    would lock the set's row as well, making every decision on the set wait for the others."""
    if connection.features.has_select_for_update:
        list(Item.objects.select_for_update().filter(pk=item_id).order_by().values_list("pk"))


def set_gold(
    *,
    policy: Policy,
    item: Item,
    label: str,
    source: str,
    by: Any,
    note: str = "",
    expected: str | None = None,
) -> GoldLabel:
    """Record the gold label of (policy, item); it replaces any earlier one (newest wins), and
    the change (old → new, who, source, ``note``) goes to the gold history in the same
    transaction. ``expected``: the gold the person saw; when the gold is another by the time
    the item is locked (someone changed it meanwhile), nothing is written and ``GoldError``
    says so, so that a decision taken on stale evidence never overwrites a newer one."""
    if label not in GoldChoice.values:
        raise GoldError(f"Unknown gold label {label!r}: choose 0, 1 or “policy can't decide”.")
    if source not in GoldSource.values or source == GoldSource.IMPORT:
        raise GoldError(f"Gold from {source!r} is not written as a row.")
    with transaction.atomic():
        lock_gold_of(item.pk)
        old_label, old_source = current_gold(policy_id=policy.pk, item_ids=[item.pk])[item.pk]
        if expected is not None and old_label != expected:
            now = old_label or "no gold"
            raise GoldError(
                f"The gold of {item.external_id} changed since the page was loaded "
                f"(it is now {now}); nothing was saved: reload and decide again."
            )
        gold, _ = GoldLabel.objects.update_or_create(
            policy=policy,
            item=item,
            defaults={"label": label, "source": source, "decided_by": by, "decision": None},
        )
        record_gold_changes(
            policy_id=policy.pk,
            transitions=[GoldTransition(item.pk, old_label, old_source, label, source)],
            by=by,
            note=note,
        )
    return gold


def current_gold(*, policy_id: int, item_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """``{item_id: (gold, source)}`` as ``gold_precedence`` reads it now, for the given items
    (one query); ``("", "")`` for an item without gold. What a writer of gold passes as the
    old side of a ``GoldTransition``."""
    ids = list(item_ids)
    found = {
        pk: (g or "", s or "")
        for pk, g, s in _items_with_gold(policy_id)
        .filter(pk__in=ids)
        .values_list("pk", "cur_gold", "cur_source")
    }
    return {pk: found.get(pk, ("", "")) for pk in ids}


class _CurrentGold(TypedDict):
    cur_gold: str | None
    cur_source: str


@functools.lru_cache(maxsize=256)
def _items_with_gold(policy_id: int) -> QuerySet[WithAnnotations[Item, _CurrentGold]]:
    """Items with their gold under a policy (``gold_precedence``), unordered (a dict needs no
    join with the sample sets for ``Item``'s default ordering): ``current_gold``'s statement
    without its items, assembled once per policy and process. Each decision reads its item's
    gold; resolving the three subqueries cost it more than running them."""
    row = GoldLabel.objects.filter(policy_id=policy_id, item_id=OuterRef("pk"))
    gold, source = gold_precedence(
        Subquery(row.values("label")[:1]), Subquery(row.values("source")[:1]), F("expected_label")
    )
    return Item.objects.order_by().annotate(cur_gold=gold, cur_source=source)


class GoldFields(TypedDict):
    gold: str | None
    gold_source: str


GoldLabelled: TypeAlias = "WithAnnotations[Label, GoldFields]"
"""A label row annotated by ``with_gold`` or ``with_gold_lookups``."""


def gold_precedence(
    row_label: Combinable, row_source: Combinable, expected: Combinable
) -> tuple[Combinable, Combinable]:
    """The one definition of gold precedence: a ``GoldLabel`` row (typed, reviewed) is newer than
    the import's expected label and wins; ``gold`` is "0"/"1"/"u"/None and ``gold_source`` its
    source ("" without gold), returned in that order. Every path that reads gold (figures,
    items page, CSV, misses) annotates through this."""
    gold = Coalesce(row_label, Cast(expected, output_field=CharField(max_length=1)))
    source = Case(
        When(IsNull(row_label, False), then=row_source),
        When(IsNull(expected, False), then=Value(GoldSource.IMPORT)),
        default=Value(""),
        output_field=CharField(),
    )
    return gold, source


def with_gold(labels: QuerySet[Label], policy_id: int) -> QuerySet[GoldLabelled]:
    """Annotate label rows with their item's gold (``gold_precedence``), joined."""
    gold, source = gold_precedence(F("g__label"), F("g__source"), F("item__expected_label"))
    return labels.annotate(
        g=FilteredRelation("item__gold_labels", condition=Q(item__gold_labels__policy_id=policy_id))
    ).annotate(gold=gold, gold_source=source)


@contextmanager
def no_jit() -> Iterator[None]:
    """PostgreSQL's JIT, on by default, compiles a query whose *estimated* cost is high: the
    per-row lookups of a page look costly (the planner cannot know the page stops after 50
    rows), and compiling took seconds where running took milliseconds. Off for this read."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        yield


def with_gold_lookups(labels: QuerySet[Label], policy_id: int) -> QuerySet[GoldLabelled]:
    """``with_gold`` for paged reads: the gold is looked up per row (two index lookups), so a
    page walks the label index from its cursor and stops after a page, whatever the job's size.
    (``with_gold``'s joins suit whole-job aggregates, where PostgreSQL hashes the tables.)"""
    row = GoldLabel.objects.filter(policy_id=policy_id, item_id=OuterRef("item_id"))
    expected = Item.objects.filter(pk=OuterRef("item_id")).values("expected_label")[:1]
    gold, source = gold_precedence(F("g_label"), F("g_source"), F("g_expected"))
    return labels.annotate(
        g_label=Subquery(row.values("label")[:1]),
        g_source=Subquery(row.values("source")[:1]),
        g_expected=Subquery(expected),
    ).annotate(gold=gold, gold_source=source)


@dataclass(frozen=True)
class SideGold:
    """One side's figures against gold, and what was left out of them."""

    side: str
    score: GoldScore
    no_gold: int = 0  # labeled items without any gold label
    undecidable: int = 0  # gold "policy can't decide": not a 0/1 gold, counted apart
    unlabeled: int = 0  # gold items this side could not label (error, too long)

    @property
    def few(self) -> bool:
        return self.score.few


@dataclass(frozen=True)
class GoldReport:
    job_id: int
    sides: dict[str, SideGold] = field(default_factory=dict)

    @property
    def has_gold(self) -> bool:
        return any(s.score.n for s in self.sides.values())

    @property
    def gold_items(self) -> int:
        """Items with a 0/1 gold label (the larger side's count: an erroring side has fewer)."""
        return max((s.score.n + s.unlabeled for s in self.sides.values()), default=0)

    @property
    def few_gold(self) -> int:
        return FEW_GOLD


def gold_counts(
    job: Job, sides: tuple[str, ...] = (Side.A, Side.B)
) -> dict[str, dict[tuple[str | None, int | None], int]]:
    """``{side: {(gold, label): items}}`` for the job, in one grouped query."""
    rows = (
        with_gold(Label.objects.filter(job=job, side__in=sides), job.version.policy_id)
        .values("side", "gold", "label")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[str, dict[tuple[str | None, int | None], int]] = {Side.A: {}, Side.B: {}}
    for row in rows:
        key = (row["gold"], row["label"])
        side = counts.setdefault(row["side"], {})
        side[key] = side.get(key, 0) + row["n"]
    return counts


def side_gold(side: str, counts: dict[tuple[str | None, int | None], int]) -> SideGold:
    return SideGold(
        side=side,
        score=score_from_counts(counts),
        no_gold=sum(n for (gold, _), n in counts.items() if gold is None),
        undecidable=sum(n for (gold, _), n in counts.items() if gold == GoldChoice.UNDECIDABLE),
        unlabeled=sum(
            n for (gold, label), n in counts.items() if gold in ("0", "1") and label is None
        ),
    )


def job_gold_report(job: Job, sides: tuple[str, ...] = (Side.A, Side.B)) -> GoldReport:
    """Accuracy, precision, recall, F1 and confusion of each side against gold."""
    counts = gold_counts(job, sides)
    return GoldReport(
        job_id=job.pk, sides={side: side_gold(side, counts.get(side, {})) for side in sides}
    )


def misses(job: Job, *, side: str, kind: str, limit: int = 10) -> list[dict[str, Any]]:
    """The first ``limit`` false positives (``kind="fp"``) or false negatives of a side."""
    said, gold = (1, "0") if kind == "fp" else (0, "1")
    with no_jit():
        rows = list(
            with_gold_lookups(
                Label.objects.filter(job=job, side=side, label=said), job.version.policy_id
            )
            .filter(gold=gold)
            .order_by("item_id")
            .values("item_id", "p1", "gold_source")[:limit]
        )
    return add_item_fields(rows)


def add_item_fields(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows (keyed by ``item_id``) with their item's ``item__external_id`` and
    ``item__text`` added (one query)."""
    listed = list(rows)
    items = {
        pk: (external_id, text)
        for pk, external_id, text in Item.objects.filter(
            pk__in=[r["item_id"] for r in listed]
        ).values_list("pk", "external_id", "text")
    }
    enriched = []
    for row in listed:
        external_id, text = items.get(row["item_id"], ("", ""))
        enriched.append({**row, "item__external_id": external_id, "item__text": text})
    return enriched
