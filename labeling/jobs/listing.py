"""The jobs page: every job across policies, newest first, filtered and paged by keyset.

A page is one query of at most ``PAGE_SIZE + 1`` rows through an index that starts with the
filter (``Job.Meta.indexes``): newest first is highest id first, and the next page starts
below the last id shown, so no page counts or skips over all jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from labeling.models import Job

PAGE_SIZE = 50


@dataclass(frozen=True)
class JobFilter:
    status: str = ""
    policy_id: int | None = None
    sample_set_id: int | None = None
    started_by_id: int | None = None

    def apply(self, jobs: QuerySet[Job]) -> QuerySet[Job]:
        if self.status:
            jobs = jobs.filter(status=self.status)
        if self.policy_id is not None:
            jobs = jobs.filter(version__policy_id=self.policy_id)
        if self.sample_set_id is not None:
            jobs = jobs.filter(sample_set_id=self.sample_set_id)
        if self.started_by_id is not None:
            jobs = jobs.filter(created_by_id=self.started_by_id)
        return jobs


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    older: int | None  # the ``before`` of the next (older) page; None on the last
    newer: int | None  # the ``after`` of the previous (newer) page; None on the first


def list_rows() -> QuerySet[Job]:
    """Jobs with what a row shows (policy, version, set, who), without their texts."""
    return Job.objects.select_related("version__policy", "sample_set", "created_by").defer(
        "text_a", "text_b", "stats", "error", "version__text", "version__twin_text",
        "version__twin_prompt", "version__finalize_evidence", "sample_set__report",
        "sample_set__import_options",
    )  # fmt: skip


def jobs_page(where: JobFilter, *, before: int | None = None, after: int | None = None) -> JobPage:
    """The ``PAGE_SIZE`` newest jobs matching ``where`` with ids below ``before`` (older
    pages), or the ``PAGE_SIZE`` just above ``after`` (going back to newer ones)."""
    jobs = where.apply(list_rows())
    if after is not None:
        rows = list(jobs.filter(pk__gt=after).order_by("pk")[: PAGE_SIZE + 1])
        more_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        older = rows[-1].pk if rows else None
        return JobPage(jobs=rows, older=older, newer=rows[0].pk if more_newer and rows else None)
    if before is not None:
        jobs = jobs.filter(pk__lt=before)
    rows = list(jobs.order_by("-pk")[: PAGE_SIZE + 1])
    older = rows[PAGE_SIZE - 1].pk if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    newer = rows[0].pk if before is not None and rows else None
    return JobPage(jobs=rows, older=older, newer=newer)


def percent_done(job: Job) -> float:
    """Share of the job's labels (both wordings) in, errors included, as the job page counts."""
    total = job.item_count * 2
    finished = job.done_a + job.done_b + job.errors_a + job.errors_b
    return 100.0 * finished / total if total else 0.0


def row_context(job: Job) -> dict[str, Any]:
    return {"job": job, "percent": percent_done(job)}
