"""The jobs page: every job across policies, filtered, paged by keyset, running rows live."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.jobs.listing import PAGE_SIZE
from labeling.models import Job, JobStatus, SampleSet
from policies.models import Policy, Version
from tests.labeling.conftest import make_sample_set, make_version

pytestmark = pytest.mark.django_db
LIST = "labeling:job_list"


def _jobs(version: Version, sample_set: SampleSet, user: User, n: int, **kw: Any) -> list[Job]:
    return Job.objects.bulk_create(
        [
            Job(
                version=version,
                sample_set=sample_set,
                text_a="a",
                text_b="b",
                created_by=user,
                item_count=10,
                **kw,
            )
            for _ in range(n)
        ]
    )


def _shown(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="job-row-(\d+)"', html)]


@pytest.fixture
def two_policies(author: User, admin_user: User) -> dict[str, Any]:
    hate = make_version(author, name="Hate")
    spam = make_version(author, name="Spam")
    one = make_sample_set(author, ["a"], name="Set one")
    two = make_sample_set(author, ["b"], name="Set two")
    return {
        "running": _jobs(hate, one, author, 1, status=JobStatus.RUNNING)[0],
        "failed": _jobs(spam, two, admin_user, 1, status=JobStatus.FAILED)[0],
        "done": _jobs(hate, two, admin_user, 1, status=JobStatus.SUCCEEDED)[0],
        "hate": hate.policy,
        "one": one,
    }


def test_all_jobs_across_policies_newest_first(
    client: Client, reviewer: User, two_policies: Any
) -> None:
    client.force_login(reviewer)
    html = client.get(reverse(LIST)).text
    ids = [two_policies[k].pk for k in ("done", "failed", "running")]
    assert _shown(html) == ids
    assert "Hate v1" in html and "Spam v1" in html


def test_filters_by_status_policy_set_and_who_started_it(
    client: Client, reviewer: User, admin_user: User, two_policies: Any
) -> None:
    client.force_login(reviewer)
    jobs = two_policies

    def shown(**params: Any) -> list[int]:
        return _shown(client.get(reverse(LIST), params).text)

    assert shown(status="failed") == [jobs["failed"].pk]
    assert shown(policy=jobs["hate"].pk) == [jobs["done"].pk, jobs["running"].pk]
    assert shown(sample_set=jobs["one"].pk) == [jobs["running"].pk]
    assert shown(started_by=admin_user.pk) == [jobs["done"].pk, jobs["failed"].pk]
    assert shown(status="succeeded", started_by=admin_user.pk) == [jobs["done"].pk]
    assert "No job matches these filters" in client.get(reverse(LIST), {"status": "queued"}).text


def test_a_filter_that_does_not_validate_is_a_400(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    assert client.get(reverse(LIST), {"status": "exploded"}).status_code == 400


def test_archived_policies_and_sets_are_not_offered_as_filters(
    client: Client, reviewer: User, two_policies: Any
) -> None:
    Policy.objects.filter(pk=two_policies["hate"].pk).update(archived_at=timezone.now())
    SampleSet.objects.filter(pk=two_policies["one"].pk).update(archived_at=timezone.now())
    client.force_login(reviewer)
    html = client.get(reverse(LIST)).text
    assert f'<option value="{two_policies["hate"].pk}">Hate</option>' not in html
    assert ">Set one</option>" not in html and ">Set two</option>" in html
    assert two_policies["running"].pk in _shown(html)  # its jobs are still listed


def test_pages_by_keyset_forward_and_back(client: Client, author: User) -> None:
    version = make_version(author, name="Many")
    sample_set = make_sample_set(author, ["a"], name="Many set")
    ids = sorted(
        (j.pk for j in _jobs(version, sample_set, author, 2 * PAGE_SIZE + 7)), reverse=True
    )
    client.force_login(author)
    first = client.get(reverse(LIST)).text
    assert _shown(first) == ids[:PAGE_SIZE] and "?after=" not in first
    older = re.search(r'href="\?before=(\d+)"', first)
    assert older is not None
    second = client.get(reverse(LIST), {"before": older.group(1)}).text
    assert _shown(second) == ids[PAGE_SIZE : 2 * PAGE_SIZE]
    third_link = re.search(r'href="\?before=(\d+)"', second)
    assert third_link is not None
    third = client.get(reverse(LIST), {"before": third_link.group(1)}).text
    assert _shown(third) == ids[2 * PAGE_SIZE :] and "?before=" not in third
    back = re.search(r'href="\?after=(\d+)"', third)
    assert back is not None
    assert _shown(client.get(reverse(LIST), {"after": back.group(1)}).text) == _shown(second)


def test_a_page_costs_the_same_queries_at_any_number_of_jobs(
    client: Client, author: User, django_assert_max_num_queries: Any
) -> None:
    version = make_version(author, name="Sized")
    sample_set = make_sample_set(author, ["a"], name="Sized set")
    _jobs(version, sample_set, author, 3)
    client.force_login(author)
    client.get(reverse(LIST))  # sessions, permissions cached
    with django_assert_max_num_queries(12) as few:
        client.get(reverse(LIST), {"status": "queued"})
    _jobs(version, sample_set, author, 3 * PAGE_SIZE)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse(LIST), {"status": "queued"})


def test_only_running_rows_poll_and_the_row_fragment_updates(
    client: Client, reviewer: User, two_policies: Any
) -> None:
    running, done = two_policies["running"], two_policies["done"]
    client.force_login(reviewer)
    html = client.get(reverse(LIST)).text
    row_url = reverse("labeling:job_list_row", args=[running.pk])
    assert html.count('hx-trigger="every 2s"') == 1 and f'hx-get="{row_url}"' in html
    Job.objects.filter(pk=running.pk).update(done_a=10, done_b=5)
    fragment = client.get(row_url, HTTP_HX_REQUEST="true").text
    assert fragment.strip().startswith(f'<tr id="job-row-{running.pk}"')
    assert "75%" in fragment and "hx-trigger" in fragment and "<html" not in fragment
    Job.objects.filter(pk=running.pk).update(
        done_b=10, status=JobStatus.SUCCEEDED, finished_at=timezone.now()
    )
    fragment = client.get(row_url, HTTP_HX_REQUEST="true").text
    assert "100%" in fragment and "hx-trigger" not in fragment  # the poll stops
    assert f'id="job-row-{done.pk}"' not in fragment


def test_the_top_nav_links_the_jobs_page_and_outsiders_are_refused(
    client: Client, reviewer: User, outsider: User
) -> None:
    client.force_login(reviewer)
    html = client.get(reverse("policies:list")).text
    assert f'href="{reverse(LIST)}"' in html
    assert 'aria-current="page">Jobs</a>' in client.get(reverse(LIST)).text
    client.force_login(outsider)
    assert client.get(reverse(LIST)).status_code == 403
