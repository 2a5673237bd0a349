"""Gold history (who, when, old → new, source) and the items page's count, CSV name and margin
check."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.gold import items as items_module
from labeling.gold.history import GoldTransition, item_history, record_gold_changes
from labeling.gold.services import current_gold, set_gold
from labeling.models import GoldChange, GoldLabel, GoldSource, Item, Job, SampleSet
from tests.conftest import PASSWORD
from tests.labeling.gold.test_gold import build_job

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def login(client: Client, user: Any) -> Client:
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def job(author: Any) -> Job:
    #        expected, A, B
    rows = [(1, 1, 1), (1, 0, 1), (0, 1, 0), (0, 0, 0), (None, 1, 0), (0, None, 0)]
    return build_job(author, rows)


def item_at(job: Job, row: int) -> Item:
    return Item.objects.get(sample_set=job.sample_set, row_number=row)


def history_url(job: Job, item: Item) -> str:
    return reverse("labeling:job_item_gold_history", args=[job.pk, item.pk])


def test_typed_gold_records_old_and_new_with_who_and_source(
    job: Job, reviewer: Any, admin_user: Any
) -> None:
    policy, item = job.version.policy, item_at(job, 0)  # expected label 1 at import

    set_gold(policy=policy, item=item, label="0", source=GoldSource.TYPED, by=reviewer)
    set_gold(policy=policy, item=item, label="u", source=GoldSource.AUDIT, by=admin_user)
    set_gold(policy=policy, item=item, label="u", source=GoldSource.AUDIT, by=admin_user)

    changes = list(GoldChange.objects.filter(item=item).order_by("id"))
    assert [
        (c.old_label, c.old_source, c.new_label, c.new_source, c.changed_by) for c in changes
    ] == [
        ("1", "import", "0", "typed", reviewer),
        ("0", "typed", "u", "audit", admin_user),
    ]  # the third call changed nothing and left no row
    assert all(c.policy_id == policy.pk and c.changed_at for c in changes)


def test_typed_gold_on_an_item_without_gold_starts_from_none(job: Job, reviewer: Any) -> None:
    item = item_at(job, 4)  # no expected label
    set_gold(policy=job.version.policy, item=item, label="1", source=GoldSource.TYPED, by=reviewer)

    change = GoldChange.objects.get(item=item)
    assert (change.old_label, change.old_source, change.new_label) == ("", "", "1")


def test_current_gold_reads_precedence(job: Job, reviewer: Any) -> None:
    policy = job.version.policy
    typed, imported, none = item_at(job, 2), item_at(job, 3), item_at(job, 4)
    set_gold(policy=policy, item=typed, label="1", source=GoldSource.TYPED, by=reviewer)

    assert current_gold(policy_id=policy.pk, item_ids=[typed.pk, imported.pk, none.pk]) == {
        typed.pk: ("1", "typed"),
        imported.pk: ("0", "import"),
        none.pk: ("", ""),
    }


def test_item_history_lists_the_import_first_then_each_change(
    job: Job, author: Any, reviewer: Any
) -> None:
    policy, item = job.version.policy, item_at(job, 1)
    SampleSet.objects.filter(pk=job.sample_set_id).update(name="Eval <b>set</b>")
    set_gold(policy=policy, item=item, label="0", source=GoldSource.TYPED, by=reviewer)
    record_gold_changes(
        policy_id=policy.pk,
        transitions=[GoldTransition(item.pk, "0", "typed", "1", "review")],
        by=author,
        note="second look",
    )
    GoldLabel.objects.filter(item=item).update(label="1", source="review")

    history = item_history(policy_id=policy.pk, item_id=item.pk)

    assert history.imported is not None
    assert (history.imported.new_label, history.imported.by) == ("1", author.username)
    assert history.sample_set_name == "Eval <b>set</b>"
    assert [(e.old_label, e.new_label, e.new_source, e.by) for e in history.changes] == [
        ("1", "0", "typed", reviewer.username),
        ("0", "1", "review", author.username),
    ]
    assert history.changes[1].note == "second look" and not history.older_hidden


def test_gold_set_before_history_was_kept_is_shown_as_such(job: Job, reviewer: Any) -> None:
    item = item_at(job, 4)
    GoldLabel.objects.create(
        policy=job.version.policy, item=item, label="1", source="review", decided_by=reviewer
    )

    history = item_history(policy_id=job.version.policy_id, item_id=item.pk)

    assert history.imported is None
    [entry] = history.changes
    assert (entry.kind, entry.new_label, entry.by) == ("unrecorded", "1", reviewer.username)


def test_item_history_lists_only_the_newest_changes(job: Job, reviewer: Any) -> None:
    policy, item = job.version.policy, item_at(job, 0)
    record_gold_changes(
        policy_id=policy.pk,
        transitions=[
            GoldTransition(item.pk, str(i % 2), "typed", str(1 - i % 2), "typed") for i in range(5)
        ],
        by=reviewer,
    )

    history = item_history(policy_id=policy.pk, item_id=item.pk, limit=3)

    assert history.older_hidden and len(history.changes) == 3


def test_history_fragment_and_page_show_the_changes_escaped(
    client: Client, job: Job, reviewer: Any
) -> None:
    item = item_at(job, 0)
    SampleSet.objects.filter(pk=job.sample_set_id).update(name="<script>x()</script>")
    login(client, reviewer).post(
        reverse("labeling:job_gold_set", args=[job.pk]), {"item": item.pk, "label": "0"}
    )

    fragment = client.get(history_url(job, item), **HTMX)
    html = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in html
    assert "imported with expected label <strong>1</strong>" in html
    assert "&lt;script&gt;x()&lt;/script&gt;" in html and "<script>x()" not in html
    assert f"1 (import) → <strong>0</strong> (typed), by {reviewer.username}" in html
    page = client.get(history_url(job, item))
    assert page.status_code == 200 and "<html" in page.content.decode()


def test_history_needs_permission_and_an_item_of_the_job(
    client: Client, job: Job, author: Any, outsider: Any
) -> None:
    other = build_job(author, [(1, 1, 1)])
    foreign = Item.objects.get(sample_set=other.sample_set)
    assert login(client, author).get(history_url(job, foreign)).status_code == 404
    assert login(client, outsider).get(history_url(job, item_at(job, 0))).status_code == 403


def test_items_page_work_does_not_grow_with_history(
    client: Client, job: Job, reviewer: Any
) -> None:
    login(client, reviewer)
    url = reverse("labeling:job_items", args=[job.pk])
    with CaptureQueriesContext(connection) as before:
        client.get(url)
    policy = job.version.policy
    for item in Item.objects.filter(sample_set=job.sample_set):
        for label in ("0", "1", "u", "1"):
            set_gold(policy=policy, item=item, label=label, source=GoldSource.TYPED, by=reviewer)
    with CaptureQueriesContext(connection) as after:
        html = client.get(url).content.decode()
    assert len(after) == len(before)
    assert html.count('class="gold-history"') == 6  # a history disclosure per row, loaded on demand


# Items page: how many match, the CSV's name, the margin's range -------------------------------


def test_items_page_says_how_many_items_match(client: Client, job: Job, author: Any) -> None:
    login(client, author)
    url = reverse("labeling:job_items", args=[job.pk])

    assert "<strong>6</strong> items in this job" in client.get(url).content.decode()
    html = client.get(url + "?mismatch=on", **HTMX).content.decode()
    assert "<strong>3</strong> items match these filters" in html
    html = client.get(url + "?wrong=a_fp").content.decode()
    assert "<strong>1</strong> item matches these filters" in html


def test_items_count_reads_past_the_page_with_a_cap(
    client: Client, job: Job, author: Any, monkeypatch: Any, settings: Any
) -> None:
    monkeypatch.setattr(items_module, "PAGE_SIZE", 2)
    login(client, author)
    url = reverse("labeling:job_items", args=[job.pk])

    assert client.get(url + "?mismatch=on").context["matching"].n == 3
    settings.COPE_QUEUE_COUNT_CAP = 4
    response = client.get(url)
    assert response.context["matching"].n == 5  # stopped after cap + 1 rows
    assert "<strong>4+</strong> items in this job" in response.content.decode()


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("", "job-{pk}-items.csv"),
        ("mismatch=on&wrong=a_fp", "job-{pk}-items-mismatches-false-positives-side-a.csv"),
        ("said=only_b&margin=0.25", "job-{pk}-items-only-b-said-1-margin-0.25.csv"),
        ("wrong=no_gold&said=nonsense", None),
    ],
)
def test_csv_name_says_the_filters(
    client: Client, job: Job, author: Any, query: str, name: str | None
) -> None:
    response = login(client, author).get(
        reverse("labeling:job_items_csv", args=[job.pk]) + f"?{query}"
    )
    if name is None:
        assert response.status_code == 400
        return
    assert response.status_code == 200
    expected = name.format(pk=job.pk)
    assert response["Content-Disposition"] == f'attachment; filename="{expected}"'


@pytest.mark.parametrize("margin", ["0.9", "-0.1", "nan", "abc"])
def test_margin_outside_its_range_is_a_clear_error(
    client: Client, job: Job, author: Any, margin: str
) -> None:
    login(client, author)
    response = client.get(reverse("labeling:job_items", args=[job.pk]) + f"?margin={margin}&said=a")
    html = response.content.decode()
    assert "Margin below: must be a number from 0 to 0.5" in html
    assert "This filter is not applied." in html
    assert len(response.context["page"].rows) == 3  # said=a still applies
    csv = client.get(reverse("labeling:job_items_csv", args=[job.pk]) + f"?margin={margin}")
    assert csv.status_code == 400
    assert "Margin below: must be a number from 0 to 0.5" in csv.content.decode()
