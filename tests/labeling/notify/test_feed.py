"""A policy's activity feed lists each kind of entry from its own table, newest first, and
pages with a bounded number of queries whatever the history."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.models import Decision, GoldChange, Job, JobStatus
from labeling.notify.feed import PAGE_SIZE, SOURCES, feed_page
from labeling.release.finalize import finalize
from policies.models import SettingPath
from tests.conftest import PASSWORD
from tests.labeling.release.test_finalize import (  # noqa: F401 - fixtures
    _one_sample_set,
    eval_set,
    good_job,
    resolve_all,
    version,
)
from tests.labeling.review.test_review import make_job

pytestmark = pytest.mark.django_db


def test_feed_lists_each_kind(
    version: Any,  # noqa: F811 - the fixture
    author: Any,
    admin_user: Any,
) -> None:
    policy = version.policy
    job = good_job(version, author)
    resolve_all(job)
    Job.objects.filter(pk=job.pk).update(finished_at=timezone.now())  # the factory leaves none
    policy.min_kappa = 0.5
    policy.save(changed_by=admin_user, via=SettingPath.SETTINGS)
    item = job.sample_set.items.first()
    GoldChange.objects.create(
        policy=policy, item=item, new_label="1", new_source="typed", changed_by=admin_user
    )
    finalize(version=version, by=admin_user)

    entries = feed_page(policy).entries
    texts = [e.text for e in entries]
    assert f"v{version.number} created" in texts
    assert f"v{version.number} finalized" in texts
    assert any(t.startswith(f"Job #{job.pk} started") for t in texts)
    assert f"Job #{job.pk} on v{version.number} ended: Finished" in texts
    assert any(t.startswith("minimum kappa: 0.60 → 0.50") for t in texts)
    assert any(t.startswith(f"Gold of item #{item.pk}: — → 1") for t in texts)
    times = [(e.at, e.rank, e.pk) for e in entries]
    assert times == sorted(times, reverse=True)  # newest first
    assert entries[0].text == f"v{version.number} finalized"

    client = Client()
    assert client.login(username=author.username, password=PASSWORD)
    page = client.get(reverse("labeling:policy_activity", args=[policy.pk]))
    assert page.status_code == 200
    assert f"v{version.number} finalized" in page.content.decode()


def test_pages_resume_exactly_with_ties_and_bounded_queries(
    author: Any, django_assert_max_num_queries: Any
) -> None:
    """Many gold edits at one instant: the pages together list each once; each page costs one
    query per source, however long the history."""
    job = make_job(author=author, status=JobStatus.SUCCEEDED)
    policy = job.version.policy
    item = job.sample_set.items.first()
    same = timezone.now()
    rows = GoldChange.objects.bulk_create(
        [
            GoldChange(policy=policy, item=item, new_label="1", new_source="typed")
            for _ in range(2 * PAGE_SIZE + 7)
        ]
    )
    GoldChange.objects.filter(pk__in=[r.pk for r in rows]).update(changed_at=same)
    seen: list[tuple[int, int]] = []
    cursor = ""
    pages = 0
    while True:
        with django_assert_max_num_queries(len(SOURCES)):
            page = feed_page(policy, cursor=cursor)
        seen += [(e.rank, e.pk) for e in page.entries]
        pages += 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen))  # nothing twice
    gold = [pk for rank, pk in seen if SOURCES[rank].kind == "gold"]
    assert sorted(gold) == sorted(r.pk for r in rows)  # nothing lost at the ties
    assert pages == 3


def test_a_malformed_cursor_gives_the_first_page(author: Any) -> None:
    job = make_job(author=author)
    first = feed_page(job.version.policy)
    assert feed_page(job.version.policy, cursor="garbage|x|1").entries == first.entries


def test_feed_needs_view_policy(author: Any, outsider: Any) -> None:
    job = make_job(author=author)
    client = Client()
    assert client.login(username=outsider.username, password=PASSWORD)
    url = reverse("labeling:policy_activity", args=[job.version.policy_id])
    assert client.get(url).status_code == 403


def test_decisions_are_not_a_second_copy(author: Any) -> None:
    """The feed reads the existing tables: nothing is written for it."""
    job = make_job(author=author)
    before = Decision.objects.count()
    feed_page(job.version.policy)
    assert Decision.objects.count() == before
