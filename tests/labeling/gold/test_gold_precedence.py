"""Gold precedence when an item has both an import's expected label and a gold label row (typed
on the items page, or a reviewer's decision): the row is newer and wins, with its source, on
every surface that reads gold row by row (the items page, its CSV, the misses list) and in the
job's figures, which read it with joins."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.gold.services import job_gold_report, misses, set_gold
from labeling.models import GoldSource, Item, Job, ReviewTask
from labeling.review.claim import claim_next_task
from labeling.review.decisions import submit_decision
from tests.conftest import PASSWORD
from tests.labeling.gold.test_gold import build_job

# (gold, gold_source) of each item, in item order, as every surface must show it.
EXPECTED_GOLD = [("0", "typed"), ("1", "review"), ("1", "import"), ("u", "typed")]


@pytest.fixture
def job(author: Any, reviewer: Any) -> Job:
    """Four items, side A's label against what each item's gold must be:

    0. imported 1, typed 0 afterwards: gold 0, so A's 1 is a false positive;
    1. imported 0, a reviewer decided 1: gold 1, so A's 0 is a false negative;
    2. imported 1 and nothing else: gold 1, A right;
    3. no import, typed "policy can't decide".
    """
    #                      expected, A, B
    job = build_job(author, [(1, 1, 1), (0, 0, 1), (1, 1, 1), (None, 0, 0)])
    items = list(Item.objects.filter(sample_set=job.sample_set).order_by("row_number"))
    policy = job.version.policy
    set_gold(policy=policy, item=items[0], label="0", source=GoldSource.TYPED, by=reviewer)
    set_gold(policy=policy, item=items[3], label="u", source=GoldSource.TYPED, by=reviewer)
    # The item's mismatch as its review task, decided the way a reviewer decides one.
    ReviewTask.objects.create(
        job=job, item=items[1], policy=policy, label_a=0, label_b=1, p1_a=0.2, p1_b=0.8
    )
    task = claim_next_task(reviewer=reviewer, job=job)
    assert task is not None
    submit_decision(task=task, reviewer=reviewer, label="1", wording="b")
    return job


def _item_ids(job: Job) -> list[int]:
    return list(
        Item.objects.filter(sample_set=job.sample_set)
        .order_by("row_number")
        .values_list("pk", flat=True)
    )


def _client(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_items_page_shows_the_row_over_the_import(author: Any, job: Job) -> None:
    client = _client(author)
    url = reverse("labeling:job_items", args=[job.pk])

    rows = client.get(url).context["page"].rows
    fps = client.get(url + "?wrong=a_fp").context["page"].rows
    fns = client.get(url + "?wrong=a_fn").context["page"].rows

    assert [(r["gold"], r["gold_source"]) for r in rows] == EXPECTED_GOLD
    ids = _item_ids(job)
    assert [r["item_id"] for r in fps] == [ids[0]]
    assert [r["item_id"] for r in fns] == [ids[1]]


def test_items_csv_shows_the_row_over_the_import(author: Any, job: Job) -> None:
    response = _client(author).get(reverse("labeling:job_items_csv", args=[job.pk]))
    rows = list(csv.DictReader(io.StringIO(response.getvalue().decode())))

    assert [(r["gold"], r["gold_source"]) for r in rows] == EXPECTED_GOLD


def test_misses_list_follows_the_row_over_the_import(job: Job) -> None:
    ids = _item_ids(job)

    fps = misses(job, side="A", kind="fp")
    fns = misses(job, side="A", kind="fn")

    assert [(m["item_id"], m["gold_source"]) for m in fps] == [(ids[0], "typed")]
    assert [(m["item_id"], m["gold_source"]) for m in fns] == [(ids[1], "review")]


def test_job_figures_count_the_same_gold_as_its_rows(job: Job) -> None:
    """The job's figures (``with_gold``, joins) and its rows (``with_gold_lookups``, per-row
    lookups) are two readings of one rule: they must count the same gold."""
    a = job_gold_report(job).sides["A"]

    assert (a.score.tp, a.score.fp, a.score.fn, a.score.tn) == (1, 1, 1, 0)
    assert a.undecidable == 1 and a.no_gold == 0
