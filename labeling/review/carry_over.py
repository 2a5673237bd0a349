"""Carrying decisions over to reruns: content decided under the same two texts is not asked
again."""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import QuerySet, Subquery
from django.utils import timezone

from cope_studio.lib.db import any_of
from labeling.gold.history import GoldTransition, record_gold_changes
from labeling.gold.services import current_gold
from labeling.models import Decision, GoldLabel, GoldSource, Item, Job, ReviewStatus, ReviewTask
from labeling.notify.events import queues_touched

# Gold that lives in a row (reviewed, typed, audited): carry-over never replaces it.
_ROW_SOURCES = frozenset(GoldSource.values) - {GoldSource.IMPORT}
# Open tasks examined per query when a job's mismatches are matched with earlier decisions.
_CARRY_BATCH = 1000


def _same_texts_jobs(job: Job) -> list[int]:
    """Other jobs of the job's policy that labeled with exactly the same two texts."""
    return list(
        Job.objects.filter(
            version__policy_id=job.version.policy_id, text_a=job.text_a, text_b=job.text_b
        )
        .exclude(pk=job.pk)
        .values_list("pk", flat=True)
    )


def _carried_copies(sources: dict[int, Decision], task_ids: list[int]) -> list[Decision]:
    """The decisions that resolve ``task_ids``, each a copy of its source, saved with their ids."""
    carried = [
        Decision(
            task_id=task_id,
            reviewer_id=sources[task_id].reviewer_id,
            label=sources[task_id].label,
            wording=sources[task_id].wording,
            quote=sources[task_id].quote,
            note=sources[task_id].note,
            carried_from_id=sources[task_id].carried_from_id or sources[task_id].pk,
        )
        for task_id in task_ids
    ]
    Decision.objects.bulk_create(carried)
    if not connection.features.can_return_rows_from_bulk_insert:
        keys = dict(
            Decision.objects.filter(any_of("task_id", task_ids)).values_list("task_id", "id")
        )
        for decision in carried:
            decision.pk = keys[decision.task_id]
    return carried


def _carry(
    pairs: list[tuple[int, Decision]],
    *,
    touched: set[int] | None = None,
    gold_rows: frozenset[tuple[int, int]] = frozenset(),
) -> int:
    """Resolve each open task with a copy of its earlier decision; how many were resolved.

    The tasks still open are locked (PostgreSQL; SQLite lets one writer in at a time), then
    resolved with one conditional ``update()``: a task a reviewer claimed in the meantime stays
    theirs. The gold label is written only where none exists: an older decision never
    overwrites a newer gold label. A fixed number of statements whatever the number of tasks,
    none of them a join. ``touched`` collects the jobs whose tasks were resolved;
    ``gold_rows`` names (policy, item) pairs known to hold a gold row already (see
    ``_gold_where_none``).
    """
    if not pairs:
        return 0
    sources = dict(pairs)
    with transaction.atomic(savepoint=False):
        rows = _lock_open(ReviewTask.objects.filter(any_of("id", sources)))
        return _resolve_locked(rows, sources, touched=touched, gold_rows=gold_rows)


_Row = tuple[int, int, int, int]  # a task's id, policy, item and job


def _lock_open(tasks: QuerySet[ReviewTask], limit: int | None = None) -> list[_Row]:
    """The open ones among ``tasks``, locked until the transaction ends (PostgreSQL; SQLite lets
    one writer in at a time), as (id, policy, item, job)."""
    open_tasks = tasks.filter(status=ReviewStatus.OPEN).select_for_update()
    return list(open_tasks.values_list("id", "policy_id", "item_id", "job_id")[:limit])


def _resolve_locked(
    rows: list[_Row],
    sources: dict[int, Decision],
    *,
    touched: set[int] | None,
    gold_rows: frozenset[tuple[int, int]],
) -> int:
    """Resolve the locked open tasks ``rows``, each with a copy of its decision in ``sources``
    (see ``_carry``); how many. Runs inside the transaction that locked them."""
    if not rows:
        return 0
    still_open = {pk: (policy_id, item_id) for pk, policy_id, item_id, _job in rows}
    if touched is not None:
        touched.update(job_id for *_task, job_id in rows)
    resolved = ReviewTask.objects.filter(any_of("id", still_open), status=ReviewStatus.OPEN).update(
        status=ReviewStatus.RESOLVED, resolved_at=timezone.now(), carried_over=True
    )
    if resolved != len(still_open):
        raise RuntimeError("Open tasks changed while locked; nothing was carried over.")
    carried = _carried_copies(sources, list(still_open))
    _gold_where_none(carried, still_open, gold_rows)
    return len(carried)


def _gold_where_none(
    carried: list[Decision],
    tasks: dict[int, tuple[int, int]],
    gold_rows: frozenset[tuple[int, int]] = frozenset(),
) -> None:
    """Gold from the carried decisions, only where no reviewed or typed gold exists (an older
    decision never overwrites newer gold), each change kept in the gold history. Pairs in
    ``gold_rows`` hold such gold already (the decision being carried wrote it, in this
    transaction): their gold is not read again."""
    by_policy: dict[int, list[Decision]] = {}
    for decision in carried:
        policy_id, item_id = tasks[decision.task_id]
        if (policy_id, item_id) not in gold_rows:
            by_policy.setdefault(policy_id, []).append(decision)
    for policy_id, decisions in by_policy.items():
        before = current_gold(
            policy_id=policy_id, item_ids=[tasks[d.task_id][1] for d in decisions]
        )
        new = [
            d for d in decisions if before[tasks[d.task_id][1]][1] not in _ROW_SOURCES
        ]  # an import's expected label has no row: a reviewed decision is newer
        GoldLabel.objects.bulk_create(
            [
                GoldLabel(
                    policy_id=policy_id,
                    item_id=tasks[d.task_id][1],
                    label=d.label,
                    decision_id=d.pk,
                    decided_by_id=d.reviewer_id,
                )
                for d in new
            ],
            ignore_conflicts=True,
        )
        record_gold_changes(
            policy_id=policy_id,
            transitions=[
                GoldTransition(
                    item_id=tasks[d.task_id][1],
                    old_label=before[tasks[d.task_id][1]][0],
                    old_source=before[tasks[d.task_id][1]][1],
                    new_label=d.label,
                    new_source=GoldSource.REVIEW,
                    decision_id=d.pk,
                    changed_by_id=d.reviewer_id,
                )
                for d in new
            ],
            by=None,
            note="carried over from an earlier decision under the same two texts",
        )


def carry_over_decisions(*, job_id: int) -> int:
    """Resolve the job's open mismatches that were decided under the same two texts.

    A rerun (same policy, same text A, same text B) must not ask a reviewer again about
    content they already decided: each open task whose content (by content hash) has a decision
    in such an earlier job is resolved with a copy of the newest one, marked carried over.
    Called where a job's review tasks are created; returns how many were carried over.
    """
    job = Job.objects.select_related("version").get(pk=job_id)
    same = _same_texts_jobs(job)
    if not same:
        return 0
    total = 0
    after = 0
    with transaction.atomic():
        while True:
            batch = list(
                ReviewTask.objects.filter(job_id=job_id, status=ReviewStatus.OPEN, id__gt=after)
                .order_by("id")
                .values_list("id", "item__content_hash")[:_CARRY_BATCH]
            )
            if not batch:
                break
            after = batch[-1][0]
            # The newest decision per content hash, read as (hash, id) pairs: the items'
            # texts are never loaded, only the decisions that will be copied.
            newest_id = dict(
                Decision.objects.filter(
                    task__job_id__in=same,
                    task__item__content_hash__in={h for _pk, h in batch},
                )
                .order_by("created_at", "id")
                .values_list("task__item__content_hash", "id")
            )
            decisions = Decision.objects.in_bulk(newest_id.values())
            total += _carry([(pk, decisions[newest_id[h]]) for pk, h in batch if h in newest_id])
    return total


def carry_to_open_reruns(decision: Decision, task: ReviewTask) -> int:
    """A decision also settles the same content's open tasks in jobs with the same two texts.
    Called once the decision's gold row is written, in its transaction.

    Reruns whose tasks were created before this decision was made would otherwise ask again.
    The reruns are found in one query on the (small) job and version tables; only when there are
    some are the content's items looked up (by hash, then their open tasks by item id: a join
    of items and tasks costs more to plan than to run).
    """
    texts = Job.objects.filter(pk=task.job_id)
    same = dict(
        Job.objects.filter(
            version__policy_id=task.policy_id,
            text_a=Subquery(texts.values("text_a")),
            text_b=Subquery(texts.values("text_b")),
        )
        .exclude(pk=task.job_id)
        .values_list("pk", "sample_set_id")
    )
    if not same:
        return 0
    # Unordered: ``Item``'s default ordering would join the sample sets and sort every match.
    content_hash = Item.objects.filter(pk=task.item_id).order_by().values("content_hash")
    items = list(
        Item.objects.filter(
            content_hash=Subquery(content_hash), sample_set_id__in=set(same.values())
        )
        .order_by()
        .values_list("id", flat=True)[:_CARRY_BATCH]
    )
    if not items:
        return 0
    touched: set[int] = set()
    # The decision's own gold row was written before this call (``record_final_decision``).
    own_gold = frozenset({(task.policy_id, task.item_id)})
    with transaction.atomic(savepoint=False):
        # The reruns' open tasks of this content, found and locked in one statement.
        rows = _lock_open(
            ReviewTask.objects.filter(any_of("job_id", same), any_of("item_id", items)),
            _CARRY_BATCH,
        )
        sources = {pk: decision for pk, *_rest in rows}
        carried = _resolve_locked(rows, sources, touched=touched, gold_rows=own_gold)
    queues_touched(touched)  # a rerun's queue may have emptied
    return carried
