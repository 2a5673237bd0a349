"""A policy's activity feed: versions created and finalized, jobs started and finished, settings
changes (the audit rows) and gold edits, read from their own tables, newest first.

A page asks each of the six sources for at most ``PAGE_SIZE + 1`` rows after the cursor, on
an index that starts with the policy (or the version, for jobs), merges them and keeps the
newest ``PAGE_SIZE``: the work per page does not grow with the policy's history. The order is
(time, source, id), all descending, so a cursor (the last entry's three) resumes exactly where
a page ended, ties included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Model, Q, QuerySet
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from labeling.models import GoldChange, Job
from policies.models import Policy, PolicySettingChange, Version

PAGE_SIZE = 50


@dataclass(frozen=True)
class Entry:
    at: datetime
    rank: int
    pk: int
    kind: str
    text: str
    who: str
    url: str

    @property
    def cursor(self) -> str:
        return f"{self.at.isoformat()}|{self.rank}|{self.pk}"


@dataclass(frozen=True)
class Cursor:
    at: datetime
    rank: int
    pk: int

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """None for a missing or malformed cursor (the first page)."""
        parts = text.rsplit("|", 2)
        if len(parts) != 3:
            return None
        at = parse_datetime(parts[0])
        if at is None or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        return cls(at, int(parts[1]), int(parts[2]))


@dataclass(frozen=True)
class FeedPage:
    entries: list[Entry]
    next_cursor: str


def _user(user: Any) -> str:
    return user.get_username() if user is not None else "—"


def _versions(policy: Policy) -> QuerySet[Version]:
    return Version.objects.filter(policy=policy).select_related("author", "finalized_by")


def _jobs(policy: Policy) -> QuerySet[Job]:
    return Job.objects.filter(version__policy=policy).select_related(
        "version", "created_by", "sample_set"
    )


def _version_created(v: Version) -> tuple[str, str, str]:
    return f"v{v.number} created", _user(v.author), v.get_absolute_url()


def _version_finalized(v: Version) -> tuple[str, str, str]:
    return f"v{v.number} finalized", _user(v.finalized_by), v.get_absolute_url()


def _job_started(j: Job) -> tuple[str, str, str]:
    text = f"Job #{j.pk} started on v{j.version.number} ({j.sample_set.name})"
    return text, _user(j.created_by), reverse("labeling:job_detail", args=[j.pk])


def _job_finished(j: Job) -> tuple[str, str, str]:
    text = f"Job #{j.pk} on v{j.version.number} ended: {j.get_status_display()}"
    return text, _user(j.created_by), reverse("labeling:job_detail", args=[j.pk])


def _setting(c: PolicySettingChange) -> tuple[str, str, str]:
    text = f"{c.field_display}: {c.old_value or '—'} → {c.new_value or '—'}"
    return text, _user(c.changed_by), reverse("labeling:policy_settings", args=[c.policy_id])


def _gold(g: GoldChange) -> tuple[str, str, str]:
    text = f"Gold of item #{g.item_id}: {g.old_label or '—'} → {g.new_label or '—'}"
    if g.note:
        text += f" ({g.note})"
    return text, _user(g.changed_by), ""


@dataclass(frozen=True)
class _Source:
    kind: str
    field: str
    rows: Callable[[Policy], QuerySet[Any]]
    describe: Callable[[Any], tuple[str, str, str]]


# The rank of a source is its place here: the tie-break between entries of the same time.
SOURCES = (
    _Source("version", "created_at", _versions, _version_created),
    _Source("finalize", "finalized_at", _versions, _version_finalized),
    _Source("job", "created_at", _jobs, _job_started),
    _Source("job", "finished_at", _jobs, _job_finished),
    _Source(
        "settings",
        "changed_at",
        lambda p: PolicySettingChange.objects.filter(policy=p).select_related("changed_by"),
        _setting,
    ),
    _Source(
        "gold",
        "changed_at",
        lambda p: GoldChange.objects.filter(policy=p).select_related("changed_by"),
        _gold,
    ),
)


def _after(field: str, rank: int, cursor: Cursor | None) -> Q:
    """Rows that come after the cursor in (time, rank, id) descending order."""
    if cursor is None:
        return Q(**{f"{field}__isnull": False})
    earlier = Q(**{f"{field}__lt": cursor.at})
    if rank < cursor.rank:
        return earlier | Q(**{field: cursor.at})
    if rank == cursor.rank:
        return earlier | Q(**{field: cursor.at, "pk__lt": cursor.pk})
    return earlier


def feed_page(policy: Policy, *, cursor: str = "", size: int = PAGE_SIZE) -> FeedPage:
    """One page of the policy's activity, newest first: at most ``size + 1`` rows per source."""
    after = Cursor.parse(cursor)
    entries: list[Entry] = []
    for rank, source in enumerate(SOURCES):
        rows = (
            source.rows(policy)
            .filter(_after(source.field, rank, after))
            .order_by(f"-{source.field}", "-pk")[: size + 1]
        )
        for row in rows:
            entries.append(_entry(source, rank, row))
    entries.sort(key=lambda e: (e.at, e.rank, e.pk), reverse=True)
    page = entries[:size]
    more = len(entries) > size
    return FeedPage(page, page[-1].cursor if more and page else "")


def _entry(source: _Source, rank: int, row: Model) -> Entry:
    text, who, url = source.describe(row)
    return Entry(getattr(row, source.field), rank, int(row.pk), source.kind, text, who, url)
