"""Earlier decisions on the same or near-identical content, shown on the card (and the one the
`r` key repeats)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.db.models.functions import Substr

from cope_studio.lib.db import TextPrefix, any_of
from labeling.models import Decision, Item, Job, ReviewTask

# Earlier decisions on content that starts the same way count as "near-identical" only when the
# shared start is this long; shorter texts are matched by their content hash alone. The
# ``item_text_prefix`` index in labeling/models/core.py is built on the same length.
NEAR_PREFIX = 64
# The card shows the first 160 characters of an earlier decision's content; this much is read.
EARLIER_SNIPPET_CHARS = 200
# How many items with the same content (or the same start) a lookup reads, newest first: a text
# repeated across many sample sets must not make the card's query grow.
_EARLIER_ITEMS = 200


@dataclass(frozen=True)
class EarlierDecision:
    """An earlier decision with what the card shows of where it was made."""

    decision: Decision  # with its reviewer
    job: Job  # its version's number and policy's name loaded (``str(job.version)``)
    policy_id: int
    content_hash: str
    snippet: str  # the first EARLIER_SNIPPET_CHARS characters of the content


def _items_like(item: Item) -> dict[int, tuple[str, str]]:
    """Items with the same content hash or (for a longer text) the same first ``NEAR_PREFIX``
    characters, newest first, as ``{id: (content hash, snippet)}``.

    Both conditions are answered by an index (``content_hash``, and the ``item_text_prefix``
    expression index on ``Substr(text, 1, NEAR_PREFIX)``), so the lookup never reads the whole
    table. The prefix is compared through ``TextPrefix``, which spells the indexed expression
    exactly: SQLite matches an expression index only then.
    """
    match = Q(content_hash=item.content_hash)
    if len(item.text) > NEAR_PREFIX:
        match |= Q(text_prefix=item.text[:NEAR_PREFIX])
    rows = (
        Item.objects.alias(text_prefix=TextPrefix("text", NEAR_PREFIX))
        .filter(match)
        .annotate(snippet=Substr("text", 1, EARLIER_SNIPPET_CHARS))
        .order_by("-id")
        .values_list("id", "content_hash", "snippet")[:_EARLIER_ITEMS]
    )
    return {pk: (content_hash, snippet) for pk, content_hash, snippet in rows}


def earlier_decisions(task: ReviewTask, *, limit: int = 10) -> list[EarlierDecision]:
    """Decisions on the same or near-identical content (any policy, any job), newest first.

    Same content hash means same normalised text; the same first ``NEAR_PREFIX`` characters (of
    a longer text) catches edits further on. Each step is an index lookup by an id list sent as
    one parameter (items by hash or prefix, their tasks by item, decisions by task), one large
    table per query, so the plan cannot turn into a scan of every decision whatever the
    planner's statistics say, and no join of large tables is planned (see ``claim.load_task``).
    The jobs' versions and policies come last, from the small tables.
    """
    items = _items_like(task.item)
    if not items:
        return []
    tasks = {
        pk: (job_id, item_id, policy_id)
        for pk, job_id, item_id, policy_id in ReviewTask.objects.filter(any_of("item_id", items))
        .exclude(pk=task.pk)
        .order_by()
        .values_list("id", "job_id", "item_id", "policy_id")[: _EARLIER_ITEMS * 4]
    }
    if not tasks:
        return []
    decisions = list(_decisions_newest_first().filter(any_of("task_id", tasks))[:limit])
    jobs_by_id = _jobs_named().in_bulk({tasks[d.task_id][0] for d in decisions})
    found = []
    for decision in decisions:
        job_id, item_id, policy_id = tasks[decision.task_id]
        if job_id in jobs_by_id:  # else deleted between these reads, as a join would drop it
            content_hash, snippet = items[item_id]
            found.append(
                EarlierDecision(decision, jobs_by_id[job_id], policy_id, content_hash, snippet)
            )
    return found


@functools.cache
def _decisions_newest_first() -> QuerySet[Decision]:
    """Decisions with their reviewer, newest first (assembled once per process)."""
    return Decision.objects.select_related("reviewer").order_by("-created_at", "-id")


@functools.cache
def _jobs_named() -> QuerySet[Job]:
    """Jobs with their version's number and policy's name (assembled once per process)."""
    return Job.objects.select_related("version__policy").only(
        "version", "version__number", "version__policy", "version__policy__name"
    )


def reusable_decision(
    task: ReviewTask, earlier: list[EarlierDecision] | None = None
) -> EarlierDecision | None:
    """The newest decision on this very content under this task's policy, from another task.

    Under the same two texts it would have been carried over already; what is left is a
    decision made under texts that have changed since, shown on the card for the `r` key.
    """
    candidates = earlier if earlier is not None else earlier_decisions(task)
    for entry in candidates:
        if entry.policy_id == task.policy_id and entry.content_hash == task.item.content_hash:
            return entry
    return None
