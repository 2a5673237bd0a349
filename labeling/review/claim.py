"""Claiming the queue's next task, giving a task back (skip), and the card's read of a task.

Two reviewers must never hold the same task. A claim picks a row, then takes it with a
conditional ``update()`` that changes the row only while it is still claimable, and checks that
exactly one row changed (otherwise it picks again): that update is the guarantee, on every
database. On PostgreSQL the pick also locks the row (``select_for_update(skip_locked=True)``),
so concurrent reviewers walk past each other's rows instead of all trying the oldest one; SQLite
has no row locks, and there the conditional update alone decides.

A reviewer holds at most one claim, whatever the number of tabs and clicks. The same take
refuses a row while the reviewer holds another live claim (``NOT EXISTS`` in the update: the
rule is checked by the statement that would break it). That subquery cannot see a claim another
transaction has not committed yet, so on PostgreSQL a claim first locks the reviewer's user row
(``FOR NO KEY UPDATE``: foreign-key checks are not blocked): two requests of one reviewer claim
one after the other, and the second finds and renews the first's claim. SQLite runs one write
at a time, so there the take always sees a claim the other request has written.

How long the writes hold the database differs. On PostgreSQL a claim is one transaction, from
the reviewer's lock to the card's read: the rows it locks are its own, and other reviewers' claims
walk past them. SQLite has one writer at a time for the whole database (``cope_studio.lib.sqlite``:
writers take turns), so there every write of a claim is a transaction of its own, one statement
long (the take, or the renewal with the giving back of other claims), and the reads around it
(the reviewer's claims, the pick, the card) happen outside the writers' turn. Nothing is lost by
that: the take and the renewal decide on the rows as they are when they run, whatever was read
before, and a claim taken cannot be taken by another reviewer until it runs out. The card is read
after the write, as any page is read after the write it shows; a renewed claim that another tab
of the same reviewer decided or skipped in between is reported as lost (``_held_card``), never
shown as held.

A renewal that changes no row means the claim ended between reading it and renewing it (a
decision or a skip in another tab): it is a lost claim, reported as such (``NextTask.lost``),
never shown as if it were still held.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Abs
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from cope_studio.lib.db import any_of
from labeling.models import Item, Job, ReviewStatus, ReviewTask, ReviewVote
from policies.models import Policy

# How many picks one claim makes before giving up on a busy queue (each failed pick means
# another reviewer took that row between our read and our update).
_CLAIM_ATTEMPTS = 20
# Rows read per page when skipped tasks are stepped over in Python (SQLite has no JSON
# containment).
_CANDIDATE_PAGE = 50
# What the card shows of a task's job: both texts (their diff), whether the labeler was the weak
# baseline, the version's number and the policy's name.
_CARD_JOB_FIELDS = (
    "text_a",
    "text_b",
    "backend",
    "weak_backend",
    "version",
    "version__number",
    "version__policy",
    "version__policy__name",
)


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
            tasks = tasks.filter(LessThanOrEqual(Abs(F("p1_a") - F("p1_b")), self.max_margin))
        return tasks


def _claimable(now: datetime) -> Q:
    """Open, or claimed by someone whose claim has run out."""
    return Q(status=ReviewStatus.OPEN) | Q(status=ReviewStatus.CLAIMED, claim_expires_at__lt=now)


def _expired(scope: QueueFilter, now: datetime) -> QuerySet[ReviewTask]:
    """Claims in the filter whose time ran out, oldest first (the partial index of claims)."""
    tasks = scope.apply(ReviewTask.objects.all())
    return tasks.filter(status=ReviewStatus.CLAIMED, claim_expires_at__lt=now).order_by("id")


def _groups(
    scope: QueueFilter, now: datetime, *, any_expired: bool = True
) -> list[QuerySet[ReviewTask]]:
    """Where the next task is looked for, in this order, each oldest first.

    Abandoned claims (expired) come before open tasks: they are older work somebody dropped, and
    looking them up apart keeps each query on one partial index (claims by expiry, then open
    tasks by id, by policy and id, or by job and id) instead of an ``OR`` the planner cannot walk
    in id order. Those indexes hold only live work, so the resolved history is never stepped
    over. ``any_expired`` False (the reviewer's lock statement found none in the filter) leaves
    the abandoned claims out: with ``now`` fixed, claims that ran out before it can only end
    (decided, renewed, taken), never begin, so none can appear later in the request.

    For a policy, open tasks are read from the (policy, id) index. With ``policy_id = 6`` and
    ``ORDER BY id`` PostgreSQL walks the whole queue's index instead, filtering (it takes a
    policy's tasks to be spread evenly over ids; they come in runs, one per job, and every
    policy's jobs interleave in time), stepping over every older open task of other policies.
    Written as ``policy_id = ANY(array)`` the filter makes no equivalence class, so ``ORDER BY
    policy_id, id`` is read in order from the (policy, id) index, starting at the policy's first
    open task. A job's tasks are one run, which the planner sees: ``job_id = …`` with ``ORDER BY
    id`` walks the (job, id) index.
    """
    tasks = scope.apply(ReviewTask.objects.all())
    if scope.policy is not None and scope.job is None:
        open_tasks = (
            replace(scope, policy=None)
            .apply(ReviewTask.objects.filter(status=ReviewStatus.OPEN))
            .filter(any_of("policy_id", [scope.policy.pk]))
            .order_by("policy_id", "id")
        )
    else:
        open_tasks = tasks.filter(status=ReviewStatus.OPEN).order_by("id")
    return [_expired(scope, now), open_tasks] if any_expired else [open_tasks]


def _first_not_skipped(group: QuerySet[ReviewTask], reviewer_id: int) -> ReviewTask | None:
    """The group's first task this reviewer has not skipped (nor voted on: see
    ``labeling.review.votes``) and that is assigned to nobody or to them.

    PostgreSQL filters skipped tasks in the query (JSON containment) and locks the row, walking
    past rows other reviewers are locking. SQLite has neither: skipped tasks are stepped over
    here, a page at a time, and the row is read unlocked (the conditional update decides), with
    what its card shows (``load_task``: one statement there), so a taken task is not read again.
    """
    if connection.features.supports_json_field_contains:
        return (
            group.exclude(skipped_by__contains=[reviewer_id])
            .filter(Q(assigned_to=[]) | Q(assigned_to__contains=[reviewer_id]))
            .select_for_update(skip_locked=True)
            .first()
        )
    after = 0
    while True:
        rows = list(
            group.filter(id__gt=after).values_list("id", "skipped_by", "assigned_to")[
                :_CANDIDATE_PAGE
            ]
        )
        if not rows:
            return None
        for pk, skipped, assigned in rows:
            if reviewer_id not in (skipped or []) and (not assigned or reviewer_id in assigned):
                return load_task(pk)  # with the card's rows, in one statement here
        after = rows[-1][0]


def _pick(
    scope: QueueFilter, reviewer_id: int, now: datetime, *, any_expired: bool = True
) -> ReviewTask | None:
    """The task a claim tries next, or None when nothing in the filter is claimable."""
    for group in _groups(scope, now, any_expired=any_expired):
        task = _first_not_skipped(group, reviewer_id)
        if task is not None:
            return task
    return None


def _live_claims(reviewer: User, now: datetime) -> QuerySet[ReviewTask]:
    """The reviewer's claims that have not run out (the partial index of claims)."""
    return ReviewTask.objects.filter(
        status=ReviewStatus.CLAIMED, claimed_by=reviewer, claim_expires_at__gte=now
    )


def _take(task: ReviewTask, reviewer: User, now: datetime, expires: datetime) -> bool:
    """Claim the picked task if it is still claimable and the reviewer holds no other live
    claim; whether this reviewer got it."""
    with transaction.atomic(savepoint=False):  # SQLite: the writer's turn, this statement long
        taken = (
            ReviewTask.objects.filter(_claimable(now), pk=task.pk)
            .filter(~Exists(_live_claims(reviewer, now)))
            .update(status=ReviewStatus.CLAIMED, claimed_by=reviewer, claim_expires_at=expires)
        )
    if taken != 1:
        return False
    task.status = ReviewStatus.CLAIMED
    task.claimed_by = reviewer
    task.claim_expires_at = expires
    return True


def lock_reviewer(reviewer: User) -> None:
    """Make this reviewer's claims wait for each other (PostgreSQL; see the module's note)."""
    if connection.features.has_select_for_update:
        list(
            User.objects.filter(pk=reviewer.pk)
            .select_for_update(no_key=True)
            .values_list("pk", flat=True)
        )


@dataclass(frozen=True)
class _Claims:
    held: list[tuple[int, datetime | None]]  # (id, expiry) of the reviewer's claims
    any_expired: bool  # whether the filter may have abandoned claims to pick up


@functools.cache
def _reviewers_with_claims() -> QuerySet[User]:
    """Users, locked (``FOR NO KEY UPDATE``), with the ids and expiries of the claims each holds,
    in id order: ``_claims_of``'s statement without its filter, assembled once per process (its
    subqueries cost the card as much to resolve as to run)."""
    claims = ReviewTask.objects.filter(
        status=ReviewStatus.CLAIMED, claimed_by=OuterRef("pk")
    ).order_by("id")
    return User.objects.select_for_update(no_key=True, of=("self",)).annotate(
        claim_ids=ArraySubquery(claims.values("id")),
        claim_until=ArraySubquery(claims.values("claim_expires_at")),
    )


def _claims_of(reviewer: User, expired: QuerySet[ReviewTask]) -> _Claims:
    """(id, expiry) of every claim the reviewer holds, read on the partial index of claims and
    usually answering nothing (right after a decision); on PostgreSQL the same statement takes
    the reviewer's lock (``lock_reviewer``) and says whether ``expired`` (the filter's abandoned
    claims) has any row, so a card with none spares the pick among them: the card pays per
    round trip. SQLite answers "maybe" (its round trips cost nothing).

    The claims are read as of the statement's start, before any wait for the lock: a claim that
    another request of this reviewer committed meanwhile is not among them. The take's ``NOT
    EXISTS`` (a later statement, a fresh snapshot) refuses a second claim, and the retry in
    ``claim_next`` then finds and renews that one."""
    if not connection.features.has_select_for_update:
        claims = ReviewTask.objects.filter(status=ReviewStatus.CLAIMED, claimed_by=reviewer)
        return _Claims(list(claims.order_by().values_list("id", "claim_expires_at")), True)
    row = (
        _reviewers_with_claims()
        .filter(pk=reviewer.pk)
        .annotate(any_expired=Exists(expired))
        .values_list("claim_ids", "claim_until", "any_expired")
        .first()
    )
    if row is None:  # the account is gone: it holds nothing
        return _Claims([], True)
    return _Claims(list(zip(row[0], row[1], strict=True)), bool(row[2]))


def _renew_held_claim(
    scope: QueueFilter, reviewer: User, now: datetime, expires: datetime
) -> tuple[int | None, int | None, bool]:
    """``(held, lost, any_expired)``: the id of the reviewer's live claim inside the filter,
    renewed; or the id of the one that ended before it could be renewed (its renewal changed no
    row); and whether the filter may hold abandoned claims (``_claims_of``). Any other claim
    they hold goes back to the queue."""
    claims = _claims_of(reviewer, _expired(scope, now))
    mine = claims.held
    if not mine:
        return None, None, claims.any_expired
    held_by_reviewer = ReviewTask.objects.filter(status=ReviewStatus.CLAIMED, claimed_by=reviewer)
    valid = [pk for pk, until in mine if until is not None and until >= now]
    held = (
        scope.apply(ReviewTask.objects.filter(pk__in=valid))
        .order_by("id")
        .values_list("id", flat=True)
        .first()
        if valid
        else None
    )
    lost = None
    with transaction.atomic(savepoint=False):  # SQLite: the writer's turn, these two statements
        if held is not None:
            renewed = held_by_reviewer.filter(pk=held, claim_expires_at__gte=now).update(
                claim_expires_at=expires
            )
            if renewed != 1:
                lost, held = held, None
        others = [pk for pk, _until in mine if pk != held]
        if others:
            held_by_reviewer.filter(pk__in=others).update(
                status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None
            )
    return held, lost, claims.any_expired


@dataclass(frozen=True)
class NextTask:
    """What the queue shows next: the claimed task (None: nothing claimable in the filter) and,
    when the reviewer's claim ended before it could be renewed, that task's id."""

    task: ReviewTask | None
    lost: int | None = None

    @property
    def notice(self) -> str:
        if self.lost is None:
            return ""
        return (
            f"Your claim on mismatch #{self.lost} ended before this page loaded: it was decided "
            "or skipped in another tab or window. Nothing more was recorded for it."
        )


def claim_next(
    *,
    reviewer: User,
    job: Job | None = None,
    policy: Policy | None = None,
    side_said_1: str | None = None,
    max_margin: float | None = None,
) -> NextTask:
    """Give the reviewer the next task to review, claimed for ``COPE_CLAIM_MINUTES``.

    A reviewer holds one task at a time: a still-valid claim inside the filter comes back first
    (its claim renewed); a claim outside the filter is given back to the queue. The card's rows
    are read after the claim: on PostgreSQL in its transaction (the renewed or taken row stays
    locked until the card is read), on SQLite after the write's short transaction (see the
    module's note).
    """
    scope = QueueFilter(job=job, policy=policy, side_said_1=side_said_1, max_margin=max_margin)
    now = timezone.now()
    expires = now + timedelta(minutes=settings.COPE_CLAIM_MINUTES)
    with _claim_transaction():
        held, lost, any_expired = _renew_held_claim(scope, reviewer, now, expires)  # locks
        card = _held_card(held, reviewer)
        if card is not None:
            return NextTask(card)
        lost = lost if held is None else held
        for _attempt in range(_CLAIM_ATTEMPTS):
            task = _pick(scope, reviewer.pk, now, any_expired=any_expired)
            if task is None:
                break
            if _take(task, reviewer, now, expires):
                return NextTask(_with_card(task), lost)
            # Not taken: another reviewer took the row, or this reviewer got a claim meanwhile
            # (the take refuses a second one); then that claim is the one to show.
            held, _lost, any_expired = _renew_held_claim(scope, reviewer, now, expires)
            card = _held_card(held, reviewer)
            if card is not None:
                return NextTask(card, lost)
    return NextTask(None, lost)


def _held_card(held: int | None, reviewer: User) -> ReviewTask | None:
    """The card of the claim just renewed, if it is still this reviewer's when read. On
    PostgreSQL it is (the row stays locked); on SQLite the card is read after the renewal's
    transaction, and a decision or skip in another tab may land in between: that claim is lost,
    and the queue goes on to the next task rather than show a decided one."""
    if held is None:
        return None
    task = load_task(held)
    if task.status != ReviewStatus.CLAIMED or task.claimed_by_id != reviewer.pk:
        return None
    return task


def _claim_transaction() -> AbstractContextManager[object]:
    """The claim's transaction: on a database with row locks the whole claim, elsewhere (SQLite)
    none, each write taking its own (``_take``, ``_renew_held_claim``)."""
    if connection.features.has_select_for_update:
        return transaction.atomic()
    return nullcontext()


def claim_next_task(
    *,
    reviewer: User,
    job: Job | None = None,
    policy: Policy | None = None,
    side_said_1: str | None = None,
    max_margin: float | None = None,
) -> ReviewTask | None:
    """``claim_next``'s task alone, for callers that show no notice."""
    return claim_next(
        reviewer=reviewer, job=job, policy=policy, side_said_1=side_said_1, max_margin=max_margin
    ).task


def load_task(pk: int) -> ReviewTask:
    """The task with what its card shows: item, job (texts included: the card shows their diff),
    version and policy.

    On PostgreSQL the large tables are read by primary key, one per query: a join of tasks with
    items costs PostgreSQL milliseconds of planning on tables with many dead rows (it probes the
    join keys' index ends), a lookup by key a fraction of one. SQLite plans a join by keys for
    nothing (it keeps no statistics to probe), and there one statement reads them all: the card
    pays for each statement it builds.
    """
    tasks = ReviewTask.objects if connection.vendor == "postgresql" else _card_tasks()
    return _with_card(tasks.get(pk=pk))


def _with_card(task: ReviewTask) -> ReviewTask:
    """The task with its item and job, read by key unless they came with it (``load_task``)."""
    if not ReviewTask.item.is_cached(task):
        task.item = Item.objects.get(pk=task.item_id)
    if not ReviewTask.job.is_cached(task):
        task.job = _card_jobs().get(pk=task.job_id)
    task.policy = task.job.version.policy
    return task


@functools.cache
def _card_jobs() -> QuerySet[Job]:
    """Jobs with what the card shows of them (``_CARD_JOB_FIELDS``), their version and policy
    joined: assembled once per process, each card reads one by key."""
    return Job.objects.select_related("version__policy").only(*_CARD_JOB_FIELDS)


@functools.cache
def _card_tasks() -> QuerySet[ReviewTask]:
    """Tasks with their item and what the card shows of their job (SQLite's ``load_task``):
    assembled once per process."""
    job_fields = [f"job__{name}" for name in _CARD_JOB_FIELDS]
    task_fields = [f.name for f in ReviewTask._meta.concrete_fields]
    item_fields = [f"item__{f.name}" for f in Item._meta.concrete_fields]
    return ReviewTask.objects.select_related("item", "job__version__policy").only(
        *task_fields, *item_fields, *job_fields
    )


def skip_task(*, task: ReviewTask, reviewer: User) -> None:
    """Give a claimed task back; it is not offered to this reviewer again."""
    with transaction.atomic():
        held = ReviewTask.objects.filter(
            pk=task.pk, status=ReviewStatus.CLAIMED, claimed_by=reviewer
        )
        current = held.select_for_update().values_list("skipped_by", flat=True).first()
        if current is None:
            raise ReviewError("You do not hold this task any more; nothing to skip.")
        skipped = list(current or [])
        if reviewer.pk not in skipped:
            skipped.append(reviewer.pk)
        changed = held.update(
            status=ReviewStatus.OPEN, claimed_by=None, claim_expires_at=None, skipped_by=skipped
        )
        if changed != 1:
            raise ReviewError("You do not hold this task any more; nothing to skip.")


def unskip_tasks(*, reviewer: User, scope: QueueFilter) -> int:
    """Offer the reviewer the open tasks they skipped in this filter again; how many."""
    tasks = scope.apply(ReviewTask.objects.filter(status=ReviewStatus.OPEN))
    if connection.features.supports_json_field_contains:
        tasks = tasks.filter(skipped_by__contains=[reviewer.pk])
    count = 0
    with transaction.atomic():
        rows = list(tasks.select_for_update().values_list("id", "skipped_by"))
        # A reviewer's own vote keeps them in ``skipped_by``: it is not a skip to undo.
        voted = set(
            ReviewVote.objects.filter(
                reviewer=reviewer, task_id__in=[pk for pk, _s in rows]
            ).values_list("task_id", flat=True)
        )
        for pk, skipped in rows:
            if reviewer.pk in (skipped or []) and pk not in voted:
                remaining = [user for user in skipped if user != reviewer.pk]
                ReviewTask.objects.filter(pk=pk).update(skipped_by=remaining)
                count += 1
    return count
