"""The mismatch review queue: claim, decide, skip, earlier decisions, review notes.

Two reviewers must never hold the same task. Every claim is a conditional ``UPDATE`` (the row
changes only while it is still claimable), which is the guarantee on every backend. On PostgreSQL
the claim is one ``UPDATE … RETURNING`` whose row is picked with ``FOR UPDATE SKIP LOCKED``, so
concurrent reviewers walk past each other's rows instead of queueing behind them; SQLite has no
row locks (its IMMEDIATE transactions serialise writers), so there the conditional update alone
decides and the next candidate is tried.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db import connection, transaction
from django.db.models import Case, Count, F, Min, Q, QuerySet, Value, When, Window
from django.db.models.functions import Abs, Lower, RowNumber, Substr
from django.utils import timezone
from django.utils.http import urlencode

from cope_studio.lib.db import fetch, marks, table, update_returning
from labeling.models import (
    Decision,
    GoldChoice,
    GoldLabel,
    GoldSource,
    Item,
    Job,
    ReviewStatus,
    ReviewTask,
    Wording,
)
from policies.models import Policy, Version

# How many candidates one claim tries before giving up on a busy queue (each failed try means
# another reviewer took that row between our read and our update).
_CLAIM_ATTEMPTS = 20
# Rows read per page when skipped tasks are filtered in Python (SQLite has no JSON containment).
_CANDIDATE_PAGE = 50
# Earlier decisions on content that starts the same way count as "near-identical" only when the
# shared start is this long; shorter texts are matched by their content hash alone. The
# ``item_text_prefix`` index in labeling/models.py is built on the same length.
NEAR_PREFIX = 64


class ReviewError(Exception):
    """A review action that cannot happen as asked (lost claim, already resolved)."""


@dataclass(frozen=True)
class QueueFilter:
    """Which part of the queue a reviewer works on. Empty fields mean "any"."""

    job: Job | None = None
    policy: Policy | None = None
    side_said_1: str | None = None  # "A" or "B": the side whose label was 1
    max_margin: float | None = None  # |p1_a - p1_b| at most this

    def apply(self, tasks: QuerySet[ReviewTask]) -> QuerySet[ReviewTask]:
        if self.job is not None:
            tasks = tasks.filter(job=self.job)
        if self.policy is not None:
            tasks = tasks.filter(policy=self.policy)
        if self.side_said_1 == "A":
            tasks = tasks.filter(label_a=1)
        elif self.side_said_1 == "B":
            tasks = tasks.filter(label_b=1)
        elif self.side_said_1 is not None:
            raise ValueError(f"side_said_1 must be 'A' or 'B', not {self.side_said_1!r}")
        if self.max_margin is not None:
            tasks = tasks.alias(margin=Abs(F("p1_a") - F("p1_b"))).filter(  # type: ignore[misc,no-redef]
                margin__lte=self.max_margin
            )
        return tasks


def _claim_expiry() -> Any:
    return timezone.now() + timedelta(minutes=settings.COPE_CLAIM_MINUTES)


def _claimable(now: Any) -> Q:
    """Open, or claimed by someone whose claim has run out."""
    return Q(status=ReviewStatus.OPEN) | Q(status=ReviewStatus.CLAIMED, claim_expires_at__lt=now)


def _candidate_ids(tasks: QuerySet[ReviewTask], reviewer_id: int, now: Any) -> Iterator[int]:
    """Ids of claimable tasks this reviewer has not skipped, oldest first (backends without
    row locks; PostgreSQL claims in one statement, ``_claim_statement``).

    Abandoned claims (expired) come before open tasks: they are older work somebody dropped,
    and looking them up first keeps each query on one partial index (claims by expiry, then
    open tasks by id, by policy and id, or by job and id) instead of an ``OR`` the planner
    cannot walk in id order. Those indexes hold only live work, so the resolved history, however
    long, is never stepped over. Skipped tasks are filtered here: SQLite has no JSON containment.
    """
    groups = [
        tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__lt=now),
        tasks.filter(status=ReviewStatus.OPEN),
    ]
    for group in groups:
        after = 0
        while True:
            rows = list(
                (group.filter(id__gt=after) if after else group)
                .order_by("id")
                .values_list("id", "skipped_by")[:_CANDIDATE_PAGE]
            )
            if not rows:
                break
            for pk, skipped in rows:
                if reviewer_id not in (skipped or []):
                    yield pk
            after = rows[-1][0]


def _claim_statement(
    scope: QueueFilter, reviewer_id: int, now: Any, expires: Any
) -> tuple[str, list[Any]]:
    """PostgreSQL: claim the first claimable task in one ``UPDATE … RETURNING`` statement.

    The row is picked by ``COALESCE`` of two locking subqueries: the oldest abandoned claim
    (expired), else the oldest open task, each walking one partial index in id order and
    skipping rows other reviewers are locking right now (``FOR UPDATE SKIP LOCKED``) and rows
    this reviewer skipped. ``COALESCE`` evaluates the second only when the first finds nothing.
    The outer condition repeats "still claimable", so the statement alone is the guarantee; it
    needs no transaction around it, and it returns the claimed row.

    For a policy, open tasks are walked on the (policy, id) partial index. With ``policy_id =
    6`` and ``ORDER BY id`` the planner walks the whole queue's index instead, filtering (it
    takes a policy's tasks to be spread evenly over ids; they come in runs, one run per job, and
    every policy's jobs interleave in time), stepping over every older open task of other
    policies: milliseconds, growing with the queue. Written as ``policy_id = ANY(array)`` the
    filter makes no equivalence class, so ``ORDER BY policy_id, id`` is read in order from the
    (policy, id) index, starting at the policy's first open task. A job's tasks are one run,
    which the planner sees: ``job_id = …`` with ``ORDER BY id`` walks the (job, id) index.
    """
    tasks = scope.apply(ReviewTask.objects.all())
    open_tasks = tasks.filter(status=ReviewStatus.OPEN)
    order: tuple[str, ...] = ("id",)
    tasks_table = table(ReviewTask)
    if scope.policy is not None and scope.job is None:
        open_tasks = QueueFilter(side_said_1=scope.side_said_1, max_margin=scope.max_margin).apply(
            ReviewTask.objects.filter(status=ReviewStatus.OPEN)
        )
        open_tasks = open_tasks.extra(  # noqa: S610 - fixed SQL, the id is a parameter
            where=[f"{tasks_table}.policy_id = ANY(%s)"], params=[[scope.policy.pk]]
        )
        order = ("policy_id", "id")
    picks: list[str] = []
    params: list[Any] = []
    for group, group_order in (
        (tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__lt=now), ("id",)),
        (open_tasks, order),
    ):
        sql, args = (
            group.exclude(skipped_by__contains=[reviewer_id])
            .order_by(*group_order)
            .values("id")[:1]
            .query.sql_with_params()
        )
        picks.append(f"({sql} FOR UPDATE SKIP LOCKED)")
        params.extend(args)
    columns = ", ".join(
        connection.ops.quote_name(str(f.column)) for f in ReviewTask._meta.concrete_fields
    )
    sql = (
        f"UPDATE {tasks_table} SET status = %s, claimed_by_id = %s, claim_expires_at = %s "
        f"WHERE id = COALESCE({', '.join(picks)}) "
        "AND (status = %s OR (status = %s AND claim_expires_at < %s)) "
        f"RETURNING {columns}"
    )
    return sql, [
        ReviewStatus.CLAIMED,
        reviewer_id,
        expires,
        *params,
        ReviewStatus.OPEN,
        ReviewStatus.CLAIMED,
        now,
    ]


def _claim_in_one_statement(
    scope: QueueFilter, reviewer_id: int, now: Any, expires: Any
) -> ReviewTask | None:
    """The claimed task (not yet with its item and job), or None when nothing is claimable.

    A statement can come back empty while work remains: the row it picked was resolved by
    someone else between its snapshot and its lock (PostgreSQL then re-checks and drops it).
    Only then, and only while some claimable task still exists, is it tried again.
    """
    sql, params = _claim_statement(scope, reviewer_id, now, expires)
    tasks = scope.apply(ReviewTask.objects.all())
    fields: list[Any] = list(ReviewTask._meta.concrete_fields)
    for _attempt in range(_CLAIM_ATTEMPTS):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is not None:
            # As the ORM would read them (``skipped_by`` comes back as JSON text).
            values = [
                f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
                for f, v in zip(fields, row, strict=True)
            ]
            return ReviewTask.from_db(connection.alias, [f.attname for f in fields], values)
        if not (
            tasks.filter(_claimable(now))
            .exclude(skipped_by__contains=[reviewer_id])
            .order_by()
            .exists()
        ):
            return None
    return None


def claim_next_task(
    *,
    reviewer: Any,
    job: Job | None = None,
    policy: Policy | None = None,
    side_said_1: str | None = None,
    max_margin: float | None = None,
) -> ReviewTask | None:
    """Give the reviewer the next task to review, claimed for ``COPE_CLAIM_MINUTES``.

    A reviewer holds one task at a time: a still-valid claim inside the filter comes back first
    (its claim renewed); a claim outside the filter is given back to the queue.
    """
    scope = QueueFilter(job=job, policy=policy, side_said_1=side_said_1, max_margin=max_margin)
    tasks = scope.apply(ReviewTask.objects.all())
    now = timezone.now()
    expires = _claim_expiry()
    # What the reviewer holds (the partial index of claims; usually nothing, right after a
    # decision): one query, then the held task is looked at only when there is one.
    mine = list(
        ReviewTask.objects.filter(status=ReviewStatus.CLAIMED, claimed_by=reviewer)
        .order_by()
        .values_list("id", "claim_expires_at")
    )
    if mine:
        with transaction.atomic():
            valid = [pk for pk, until in mine if until is not None and until >= now]
            held = (
                tasks.filter(pk__in=valid).order_by("id").values_list("id", flat=True).first()
                if valid
                else None
            )
            if held is not None:
                ReviewTask.objects.filter(
                    pk=held, status=ReviewStatus.CLAIMED, claimed_by=reviewer
                ).update(claim_expires_at=expires)
                return load_task(held)
            ReviewTask.objects.filter(
                pk__in=[pk for pk, _until in mine], status=ReviewStatus.CLAIMED, claimed_by=reviewer
            ).update(status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None)
    if connection.vendor == "postgresql":
        task = _claim_in_one_statement(scope, reviewer.pk, now, expires)
        return _attach_item_and_job(task) if task is not None else None
    with transaction.atomic():
        for attempt, pk in enumerate(_candidate_ids(tasks, reviewer.pk, now)):
            if attempt >= _CLAIM_ATTEMPTS:
                break
            claimed = (
                ReviewTask.objects.filter(_claimable(now), pk=pk).update(
                    status=ReviewStatus.CLAIMED, claimed_by=reviewer, claim_expires_at=expires
                )
                == 1
            )
            if claimed:
                return load_task(pk)
    return None


def load_task(pk: int) -> ReviewTask:
    """The task with its item, job (texts included: the card shows their diff), version and
    policy. The large tables are read by primary key, one table per query: a join of tasks
    with items costs PostgreSQL milliseconds of planning on tables with many dead rows (it
    probes the join keys' index ends), a lookup by key a fraction of one."""
    return _attach_item_and_job(ReviewTask.objects.get(pk=pk))


def _partial(model: type[Any], **fields: Any) -> Any:
    """An instance of ``model`` holding only ``fields``: any other field is read from the
    database when used (Django's deferred fields), never a silent default."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in fields]
    return model.from_db(connection.alias, names, [fields[name] for name in names])


def _now_param(now: Any = None) -> Any:
    """A datetime as a parameter of hand-written SQL, in the form the ORM stores (SQLite keeps
    naive UTC text; a raw aware datetime would be stored in another spelling)."""
    return connection.ops.adapt_datetimefield_value(now or timezone.now())


def _attach_item_and_job(task: ReviewTask) -> ReviewTask:
    """The item by key; the job whole, with its version's number and its policy's name, in one
    statement over the small job, version and policy tables (built through the ORM, it took
    twice as long to build as to run)."""
    task.item = Item.objects.get(pk=task.item_id)
    jobs = Job.objects.raw(
        f"SELECT j.*, v.number AS v_number, v.policy_id AS v_policy_id, p.name AS p_name "
        f"FROM {table(Job)} j JOIN {table(Version)} v ON v.id = j.version_id "
        f"JOIN {table(Policy)} p ON p.id = v.policy_id WHERE j.id = %s",
        [task.job_id],
    )
    job = next(iter(jobs), None)
    if job is None:
        raise Job.DoesNotExist(f"Job {task.job_id} does not exist.")
    extra: dict[str, Any] = job.__dict__  # the joined columns, set on the job by raw()
    policy = _partial(Policy, id=extra["v_policy_id"], name=extra["p_name"])
    job.version = _partial(
        Version, id=job.version_id, policy_id=policy.pk, number=extra["v_number"]
    )
    job.version.policy = policy
    task.job = job
    task.policy = policy
    return task


def submit_decision(
    *,
    task: ReviewTask,
    reviewer: Any,
    label: str,
    wording: str,
    quote: str = "",
    note: str = "",
    reused: Decision | None = None,
) -> Decision:
    """Resolve a task the reviewer holds a valid claim on; record the decision and gold label.

    ``reused`` is the earlier decision the reviewer repeated (the `r` key). The decision also
    resolves the same content's open tasks in jobs with the same two texts (carried over).
    """
    if label not in GoldChoice.values:
        raise ValueError(f"Unknown label {label!r}")
    if wording not in Wording.values:
        raise ValueError(f"Unknown wording {wording!r}")
    now = timezone.now()
    with transaction.atomic():
        # Plain SQL for the statements every decision makes (the ORM took longer to build them
        # than the database to run them). Resolved only while the reviewer's claim holds.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table(ReviewTask)} SET status = %s, resolved_at = %s, "
                "claim_expires_at = NULL WHERE id = %s AND status = %s AND claimed_by_id = %s "
                "AND claim_expires_at >= %s",
                [
                    ReviewStatus.RESOLVED,
                    _now_param(now),
                    task.pk,
                    ReviewStatus.CLAIMED,
                    reviewer.pk,
                    _now_param(now),
                ],
            )
            resolved = cursor.rowcount
        if resolved != 1:
            raise ReviewError(
                "Your claim on this task has ended (it expired, was skipped, or another "
                "reviewer resolved it). Nothing was recorded; take the next task."
            )
        decision = Decision.objects.create(
            task_id=task.pk,
            reviewer=reviewer,
            label=label,
            wording=wording,
            quote=" ".join(quote.split()),  # one spelling per clause: notes group on it
            note=note.strip(),
            carried_from_id=(reused.carried_from_id or reused.pk) if reused is not None else None,
        )
        # One upsert on the (policy, item) key: the decision replaces whatever gold label was
        # there, a typed one included.
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table(GoldLabel)} "
                "(policy_id, item_id, label, decision_id, decided_by_id, updated_at, source) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (policy_id, item_id) DO UPDATE "
                "SET label = excluded.label, decision_id = excluded.decision_id, "
                "decided_by_id = excluded.decided_by_id, updated_at = excluded.updated_at, "
                "source = excluded.source",
                [
                    task.policy_id,
                    task.item_id,
                    label,
                    decision.pk,
                    reviewer.pk,
                    _now_param(now),
                    GoldSource.REVIEW,
                ],
            )
        _carry_to_open_reruns(decision, task)
    task.status = ReviewStatus.RESOLVED
    task.resolved_at = now
    return decision


def unskip_tasks(*, reviewer: Any, scope: QueueFilter) -> int:
    """Offer the reviewer the open tasks they skipped in this filter again; how many."""
    tasks = scope.apply(ReviewTask.objects.filter(status=ReviewStatus.OPEN))
    if connection.features.supports_json_field_contains:
        tasks = tasks.filter(skipped_by__contains=[reviewer.pk])
    count = 0
    with transaction.atomic():
        for pk, skipped in tasks.select_for_update().values_list("id", "skipped_by"):
            if reviewer.pk in (skipped or []):
                remaining = [user for user in skipped if user != reviewer.pk]
                ReviewTask.objects.filter(pk=pk).update(skipped_by=remaining)
                count += 1
    return count


def skip_task(*, task: ReviewTask, reviewer: Any) -> None:
    """Give a claimed task back; it is not offered to this reviewer again."""
    with transaction.atomic():
        current = (
            ReviewTask.objects.select_for_update()
            .filter(pk=task.pk, status=ReviewStatus.CLAIMED, claimed_by=reviewer)
            .values_list("skipped_by", flat=True)
            .first()
        )
        if current is None:
            raise ReviewError("You do not hold this task any more; nothing to skip.")
        skipped = list(current or [])
        if reviewer.pk not in skipped:
            skipped.append(reviewer.pk)
        changed = ReviewTask.objects.filter(
            pk=task.pk, status=ReviewStatus.CLAIMED, claimed_by=reviewer
        ).update(
            status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None, skipped_by=skipped
        )
        if changed != 1:
            raise ReviewError("You do not hold this task any more; nothing to skip.")


@dataclass(frozen=True)
class QueueCounts:
    """Task counts of a filter, each counted up to ``cap`` (then shown as "cap+")."""

    open: int
    claimed: int
    resolved: int
    carried: int = 0  # of the resolved, how many were carried over without asking
    cap: int = 0

    @property
    def total(self) -> int:
        return self.open + self.claimed + self.resolved

    def _over(self, n: int) -> bool:
        return bool(self.cap) and n > self.cap

    @property
    def open_over_cap(self) -> bool:
        return self._over(self.open)

    @property
    def resolved_over_cap(self) -> bool:
        return self._over(self.resolved)

    @property
    def carried_over_cap(self) -> bool:
        return self._over(self.carried)

    @property
    def total_over_cap(self) -> bool:
        return self.open_over_cap or self.resolved_over_cap


def _capped_counts(querysets: list[QuerySet[ReviewTask]], cap: int) -> list[int]:
    """Each queryset's ``count(*)``, stopping after ``cap + 1`` rows; one round trip for all.

    Each count is an index range read of at most ``cap + 1`` entries, never the history.
    """
    parts: list[str] = []
    params: list[Any] = []
    for n, tasks in enumerate(querysets):
        sql, args = tasks.order_by().values("id")[: cap + 1].query.sql_with_params()
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS capped_{n})")
        params.extend(args)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}", params)
        row = cursor.fetchone()
    return [int(value) for value in row]


# Counts (open, resolved, carried over: by index in queue_counts) that may be taken as over
# the cap for this many seconds once read over it. Claims are never: they are few and change.
_MONOTONE_COUNTS = (0, 3, 4)
_OVER_CAP_SECONDS = 10


def queue_counts(scope: QueueFilter, *, cap: int | None = None) -> QueueCounts:
    """Open (expired claims included), validly claimed, resolved and carried-over tasks.

    Each count reads at most ``cap + 1`` index entries (``COPE_QUEUE_COUNT_CAP``, 1,000 by
    default); a count above the cap is shown as "1000+". Open and claimed tasks are read from
    the partial indexes that hold only live work, so those counts cost what the live queue
    holds; the resolved history is counted only up to the cap.
    """
    cap = int(cap or settings.COPE_QUEUE_COUNT_CAP)
    now = timezone.now()
    tasks = scope.apply(ReviewTask.objects.all())
    parts = [
        tasks.filter(status=ReviewStatus.OPEN),
        tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__lt=now),
        tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__gte=now),
        tasks.filter(status=ReviewStatus.RESOLVED),
        tasks.filter(carried_over=True),
    ]
    # A count shown as "1000+" cannot visibly change with one decision: for a few seconds it is
    # taken as still over the cap instead of read again (each read walks cap + 1 index entries,
    # the costliest part of the card's counts). Counts under the cap are always read.
    key = (
        f"cope:queue-over-cap:{cap}:{scope.job.pk if scope.job else ''}:"
        f"{scope.policy.pk if scope.policy else ''}:{scope.side_said_1 or ''}:"
        f"{'' if scope.max_margin is None else scope.max_margin}"
    )
    over: set[int] = set(cache.get(key) or ())
    read = [i for i in range(len(parts)) if i not in over]
    values = dict.fromkeys(over, cap + 1)
    values.update(zip(read, _capped_counts([parts[i] for i in read], cap), strict=True))
    now_over = {i for i in _MONOTONE_COUNTS if values[i] > cap}
    if now_over != over:
        cache.set(key, sorted(now_over), timeout=_OVER_CAP_SECONDS)
    open_, expired, claimed, resolved, carried = (values[i] for i in range(len(parts)))
    return QueueCounts(
        open=min(cap + 1, open_ + expired),
        claimed=claimed,
        resolved=resolved,
        carried=carried,
        cap=cap,
    )


# How many items with the same content (or the same start) an earlier-decision lookup reads,
# newest first: a text repeated across many sample sets must not make the card's query grow.
_EARLIER_ITEMS = 200
# The card shows the first 160 characters of an earlier decision's content; this much is read.
EARLIER_SNIPPET_CHARS = 200


def _items_like(item: Item, *, near: bool) -> dict[int, tuple[str, str]]:
    """Items with the same content hash (or, with ``near``, the same first characters), as
    ``{id: (content_hash, first EARLIER_SNIPPET_CHARS characters of the text)}``.

    Both conditions are answered by an index (``content_hash`` and the ``item_text_prefix``
    expression index on ``Substr(text, 1, NEAR_PREFIX)``), so the lookup never scans items.
    """
    match = Q(content_hash=item.content_hash)
    if near and len(item.text) > NEAR_PREFIX:
        match |= Q(text_prefix=item.text[:NEAR_PREFIX])
    rows = (
        Item.objects.alias(text_prefix=Substr("text", 1, NEAR_PREFIX))
        .filter(match)
        .annotate(snippet=Substr("text", 1, EARLIER_SNIPPET_CHARS))
        .order_by("-id")
        .values_list("id", "content_hash", "snippet")[:_EARLIER_ITEMS]
    )
    return {pk: (content_hash, snippet) for pk, content_hash, snippet in rows}


def earlier_decisions(task: ReviewTask, *, limit: int = 10) -> list[Decision]:
    """Decisions on the same or near-identical content (any policy, any job), newest first.

    Same content hash means same normalised text; the same first ``NEAR_PREFIX`` characters
    (of a longer text) catches edits further on. Each step is an index lookup by explicit ids
    (items by hash or prefix, their tasks by item, decisions by task), one large table per
    query, so the plan cannot turn into a scan of every decision whatever the planner's
    statistics say, and no join of large tables is planned (see ``load_task``).

    What each decision comes with is what the card shows, no more: its reviewer (id and name);
    its task, with the task's policy (id and name), its job (id, and a version with its number
    and policy) and an item holding the content hash and only the first
    ``EARLIER_SNIPPET_CHARS`` characters of the text.
    """
    items = _items_like(task.item, near=True)
    if not items:
        return []
    # The next steps are plain SQL over integer keys: through the ORM, building each query took
    # longer than running it, and this runs for every card.
    tasks = {
        row[0]: row
        for row in fetch(
            f"SELECT id, job_id, item_id, policy_id FROM {table(ReviewTask)} "
            f"WHERE item_id IN ({marks(items)}) AND id <> %s LIMIT {_EARLIER_ITEMS * 4}",
            [*items, task.pk],
        )
    }
    if not tasks:
        return []
    decisions = list(
        Decision.objects.raw(
            f"SELECT * FROM {table(Decision)} WHERE task_id IN ({marks(tasks)}) "
            f"ORDER BY created_at DESC, id DESC LIMIT {int(limit)}",
            list(tasks),
        )
    )
    if not decisions:
        return []
    # Only what the card shows: the job's version as "policy vN", the reviewer's name. Any
    # other field read later is loaded then (``_partial``).
    job_ids = {tasks[d.task_id][1] for d in decisions}
    jobs: dict[int, Job] = {}
    for job_id, version_id, number, policy_id, name in fetch(
        f"SELECT j.id, v.id, v.number, p.id, p.name FROM {table(Job)} j "
        f"JOIN {table(Version)} v ON v.id = j.version_id "
        f"JOIN {table(Policy)} p ON p.id = v.policy_id WHERE j.id IN ({marks(job_ids)})",
        list(job_ids),
    ):
        policy = _partial(Policy, id=policy_id, name=name)
        version = _partial(Version, id=version_id, policy_id=policy_id, number=number)
        version.policy = policy
        jobs[job_id] = _partial(Job, id=job_id, version_id=version_id)
        jobs[job_id].version = version
    User = get_user_model()
    name_field = str(User.USERNAME_FIELD)  # a plain field: its attname is its name
    reviewer_ids = {d.reviewer_id for d in decisions}
    reviewers = {
        pk: _partial(User, id=pk, **{name_field: username})
        for pk, username in fetch(
            f"SELECT id, {connection.ops.quote_name(name_field)} FROM {table(User)} "
            f"WHERE id IN ({marks(reviewer_ids)})",
            list(reviewer_ids),
        )
    }
    kept: list[Decision] = []
    for decision in decisions:
        task_id, job_id, item_id, policy_id = tasks[decision.task_id]
        job = jobs.get(job_id)
        reviewer = reviewers.get(decision.reviewer_id)
        if job is None or reviewer is None:
            continue  # deleted between these reads, as a join would have dropped it
        content_hash, snippet = items[item_id]
        earlier = _partial(
            ReviewTask, id=task_id, job_id=job_id, item_id=item_id, policy_id=policy_id
        )
        earlier.job = job
        earlier.policy = job.version.policy
        # The text is cut (``EARLIER_SNIPPET_CHARS``): what the card shows of it.
        earlier.item = _partial(Item, id=item_id, content_hash=content_hash, text=snippet)
        decision.task = earlier
        decision.reviewer = reviewer
        kept.append(decision)
    return kept


def reusable_decision(task: ReviewTask, earlier: list[Decision] | None = None) -> Decision | None:
    """The newest decision on this very content under this task's policy, from another task.

    Under the same two texts it would have been carried over already; what is left is a
    decision made under texts that have changed since, shown on the card for the `r` key.
    """
    candidates = earlier if earlier is not None else earlier_decisions(task)
    for decision in candidates:
        if (
            decision.task.policy_id == task.policy_id
            and decision.task.item.content_hash == task.item.content_hash
        ):
            return decision
    return None


# --- carrying decisions over to reruns ---------------------------------------------------------

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


def _carry(pairs: list[tuple[int, Decision]]) -> int:
    """Resolve each open task with a copy of its earlier decision; how many were resolved.

    The tasks are resolved with one conditional ``UPDATE`` (still open; ``RETURNING`` the rows
    it resolved where the database can): a task a reviewer claimed in the meantime stays
    theirs. The gold label is written only where none exists: an older decision never
    overwrites a newer gold label. A fixed number of statements whatever the number of tasks,
    none of them a join.
    """
    if not pairs:
        return 0
    sources = dict(pairs)
    statement = (
        f"UPDATE {table(ReviewTask)} SET status = %s, resolved_at = %s, carried_over = %s "
        f"WHERE id IN ({marks(sources)}) AND status = %s"
    )
    params = [ReviewStatus.RESOLVED, _now_param(), True, *sources, ReviewStatus.OPEN]
    if update_returning():
        resolved = {
            task_id: (policy_id, item_id)
            for task_id, policy_id, item_id in fetch(
                f"{statement} RETURNING id, policy_id, item_id", params
            )
        }
    else:  # SQLite before 3.35: the same update, then the rows it resolved
        now = params[1]
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
        resolved = {
            task_id: (policy_id, item_id)
            for task_id, policy_id, item_id in fetch(
                f"SELECT id, policy_id, item_id FROM {table(ReviewTask)} "
                f"WHERE id IN ({marks(sources)}) AND carried_over = %s AND resolved_at = %s",
                [*sources, True, now],
            )
        }
    carried = [
        Decision(
            task_id=task_id,
            reviewer_id=source.reviewer_id,
            label=source.label,
            wording=source.wording,
            quote=source.quote,
            note=source.note,
            carried_from_id=source.carried_from_id or source.pk,
        )
        for task_id, source in sources.items()
        if task_id in resolved
    ]
    Decision.objects.bulk_create(carried)  # sets each pk (PostgreSQL, SQLite >= 3.35)
    if any(d.pk is None for d in carried):  # a database that cannot return the new keys
        keys = dict(
            Decision.objects.filter(task_id__in=[d.task_id for d in carried])
            .order_by("id")
            .values_list("task_id", "id")
        )
        for d in carried:
            d.pk = keys[d.task_id]
    GoldLabel.objects.bulk_create(
        [
            GoldLabel(
                policy_id=resolved[d.task_id][0],
                item_id=resolved[d.task_id][1],
                label=d.label,
                decision_id=d.pk,
                decided_by_id=d.reviewer_id,
            )
            for d in carried
        ],
        ignore_conflicts=True,
    )
    return len(carried)


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
            newest: dict[str, Decision] = {}
            for decision in (
                Decision.objects.filter(
                    task__job_id__in=same,
                    task__item__content_hash__in={h for _pk, h in batch},
                )
                .select_related("task__item")
                .order_by("created_at", "id")
            ):
                newest[decision.task.item.content_hash] = decision
            total += _carry([(pk, newest[h]) for pk, h in batch if h in newest])
    return total


def _carry_to_open_reruns(decision: Decision, task: ReviewTask) -> int:
    """A decision also settles the same content's open tasks in jobs with the same two texts.

    Reruns whose tasks were created before this decision was made would otherwise ask again.
    The reruns are found in one query on the (small) job table; only when there are some is the
    content's hash read (``task.item`` need not be loaded). Plain SQL, as in ``submit_decision``.
    """
    jobs = table(Job)
    same = fetch(
        f"SELECT j.id, j.sample_set_id FROM {jobs} j "
        f"JOIN {table(Version)} v ON v.id = j.version_id JOIN {jobs} t ON t.id = %s "
        "WHERE v.policy_id = %s AND j.text_a = t.text_a AND j.text_b = t.text_b AND j.id <> t.id",
        [task.job_id, task.policy_id],
    )
    if not same:
        return 0
    if ReviewTask.item.is_cached(task):  # type: ignore[attr-defined]
        content_hash = task.item.content_hash
    else:
        content_hash = fetch(
            f"SELECT content_hash FROM {table(Item)} WHERE id = %s", [task.item_id]
        )[0][0]
    sets = {sample_set for _pk, sample_set in same}
    # Ids first: a join with items costs more to plan than to run.
    item_ids = [
        row[0]
        for row in fetch(
            f"SELECT id FROM {table(Item)} WHERE content_hash = %s "
            f"AND sample_set_id IN ({marks(sets)}) LIMIT {_CARRY_BATCH}",
            [content_hash, *sets],
        )
    ]
    if not item_ids:
        return 0
    open_ids = [
        row[0]
        for row in fetch(
            f"SELECT id FROM {table(ReviewTask)} WHERE job_id IN ({marks(same)}) "
            f"AND status = %s AND item_id IN ({marks(item_ids)}) LIMIT {_CARRY_BATCH}",
            [*(pk for pk, _set in same), ReviewStatus.OPEN, *item_ids],
        )
    ]
    return _carry([(pk, decision) for pk in open_ids])


# --- review notes --------------------------------------------------------------------------------

NOTES_GROUPS_PER_PAGE = 20
NOTES_SAMPLES_PER_GROUP = 3
NOTES_DECISIONS_PER_PAGE = 25


@dataclass
class ClauseGroup:
    quote: str  # "" for decisions without a quoted clause
    key: str  # the quote case-folded: what groups decisions together
    count: int
    carried: int = 0
    decisions: list[Decision] = field(default_factory=list)  # the newest few

    @property
    def more(self) -> int:
        return self.count - len(self.decisions)

    @property
    def query(self) -> str:
        """``clause=<key>`` for a link that opens this clause's decisions."""
        return urlencode({"clause": self.key})


@dataclass
class ReviewNotes:
    job: Job
    groups: list[ClauseGroup]  # this page's groups
    decided: int
    carried: int
    open_tasks: int
    wording_counts: dict[str, int]
    label_counts: dict[str, int]
    page: Page[Any] | None = None  # the page of clause groups
    clause: ClauseGroup | None = None  # one clause opened, with a page of its decisions
    clause_page: Page[Any] | None = None


def _clause_key(quote: str) -> str:
    return " ".join(quote.split()).casefold()


def _job_decisions(job: Job) -> QuerySet[Decision]:
    return Decision.objects.filter(task__job=job).annotate(key=Lower("quote"))


def review_notes(job: Job, *, page: int = 1, clause: str | None = None) -> ReviewNotes:
    """The job's decisions grouped by quoted clause, most-quoted clause first, one page at a time.

    Counting and grouping run in SQL (``GROUP BY lower(quote)``); a page holds
    ``NOTES_GROUPS_PER_PAGE`` clauses with their ``NOTES_SAMPLES_PER_GROUP`` newest decisions
    (one window query). With ``clause`` (a key from a group), that clause's decisions are paged
    instead. Whatever the number of decisions, a page loads a bounded number of rows.
    """
    totals = Decision.objects.filter(task__job=job).aggregate(
        decided=Count("id"),
        carried=Count("id", filter=Q(task__carried_over=True)),
        **{f"w_{c.value}": Count("id", filter=Q(wording=c.value)) for c in Wording},
        **{f"l_{c.value}": Count("id", filter=Q(label=c.value)) for c in GoldChoice},
    )
    notes = ReviewNotes(
        job=job,
        groups=[],
        decided=totals["decided"],
        carried=totals["carried"],
        open_tasks=job.review_tasks.exclude(status=ReviewStatus.RESOLVED).count(),
        wording_counts={str(c.label): totals[f"w_{c.value}"] for c in Wording},
        label_counts={str(c.label): totals[f"l_{c.value}"] for c in GoldChoice},
    )
    rows = (
        _job_decisions(job)
        .values("key")
        .annotate(
            n=Count("id"),
            quote_shown=Min("quote"),
            n_carried=Count("id", filter=Q(task__carried_over=True)),
            unquoted=Case(When(key="", then=Value(1)), default=Value(0)),
        )
        .order_by("unquoted", "-n", "key")
    )
    if clause is not None:
        key = _clause_key(clause)
        row = rows.filter(key=key).first()
        if row is not None:
            group = ClauseGroup(
                quote=row["quote_shown"], key=key, count=row["n"], carried=row["n_carried"]
            )
            decisions = (
                _job_decisions(job)
                .filter(key=key)
                .select_related("task__item", "reviewer")
                .order_by("-created_at", "-id")
            )
            notes.clause = group
            notes.clause_page = Paginator(decisions, NOTES_DECISIONS_PER_PAGE).get_page(page)
            group.decisions = list(notes.clause_page.object_list)
        return notes
    notes.page = Paginator(rows, NOTES_GROUPS_PER_PAGE).get_page(page)
    groups = {
        r["key"]: ClauseGroup(
            quote=r["quote_shown"], key=r["key"], count=r["n"], carried=r["n_carried"]
        )
        for r in notes.page.object_list
    }
    samples = (
        _job_decisions(job)
        .filter(key__in=list(groups))
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[Lower("quote")], order_by=[F("created_at").desc()]
            )
        )
        .filter(rank__lte=NOTES_SAMPLES_PER_GROUP)
        .select_related("task__item", "reviewer")
        .order_by("-created_at", "-id")
    )
    for decision in samples:
        groups[decision.key].decisions.append(decision)  # type: ignore[attr-defined]
    notes.groups = list(groups.values())
    return notes
