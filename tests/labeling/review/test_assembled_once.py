"""The card's and the decision's statements that carry subqueries are assembled once per process
(per filter, per policy) and narrowed per request: resolving the subqueries cost the card as much
as running them. Each builder is a cached function; two cards and two decisions in one filter
build each statement once, and what they read is still the request's own."""

from __future__ import annotations

import re
from typing import Any

from django.db import connection
from django.test import Client
from django.urls import reverse

from cope_studio.lib import auth
from labeling.gold import services as gold
from labeling.models import ReviewStatus, ReviewTask
from labeling.review import claim, counts, earlier, votes
from tests.labeling.review.test_review import make_job

BUILDERS = {
    "user with permissions": auth._users_with_permission_ids,
    "reviewer's claims": claim._reviewers_with_claims,
    "card's job": claim._card_jobs,
    "card's task, item and job": claim._card_tasks,
    "earlier decisions": earlier._decisions_newest_first,
    "earlier decisions' jobs": earlier._jobs_named,
    "counts": counts._counts_statement,
    "gold of a policy's items": gold._items_with_gold,
    "vote rule": votes._tasks_with_vote_rule,
}
# SQLite's requests read the reviewer's claims without the lock statement; PostgreSQL's read the
# card's rows one table at a time, SQLite's in one statement.
POSTGRESQL_ONLY = {"reviewer's claims", "card's job"}
SQLITE_ONLY = {"card's task, item and job"}


def _card(client: Client, query: dict[str, int]) -> int:
    response = client.get(reverse("labeling:queue"), query, headers={"HX-Request": "true"})
    match = re.search(r'data-task-id="(\d+)"', response.content.decode())
    assert match is not None
    return int(match.group(1))


def test_two_cards_and_decisions_build_each_statement_once(
    author: Any, reviewer: Any, second_reviewer: Any
) -> None:
    # The same content four times: the second card shows the first's decision (earlier ones).
    job = make_job(author=author, mismatches=[(1, 0.9, 0.1)] * 4, texts=["same words"] * 4)
    query = {"policy": job.version.policy_id}
    client = Client()
    client.force_login(reviewer)
    for builder in BUILDERS.values():
        builder.cache_clear()
    decided = []
    for _ in range(2):
        task_id = _card(client, query)
        response = client.post(
            reverse("labeling:review_submit", args=[task_id]), {"label": "1", "wording": "a"}
        )
        assert response.status_code == 302
        decided.append(task_id)
    for name, builder in BUILDERS.items():
        postgresql = connection.vendor == "postgresql"
        expected = 0 if name in (SQLITE_ONLY if postgresql else POSTGRESQL_ONLY) else 1
        assert builder.cache_info().misses == expected, name
    # Each request read its own rows: two tasks, each resolved by this reviewer.
    rows = ReviewTask.objects.filter(pk__in=decided).values_list("status", "decision__reviewer")
    assert sorted(rows) == [(ReviewStatus.RESOLVED, reviewer.pk)] * 2
    # Another reviewer, the same statements: their own claim, counts that include the decisions.
    other = Client()
    other.force_login(second_reviewer)
    task_id = _card(other, query)
    assert task_id not in decided
    assert ReviewTask.objects.get(pk=task_id).claimed_by_id == second_reviewer.pk
    shown = counts.queue_counts(claim.QueueFilter(policy=job.version.policy))
    assert (shown.open, shown.claimed, shown.resolved) == (1, 1, 2)
    assert counts._counts_statement.cache_info().misses == 1
