"""A job's figures per item tag: items, shares of 1, agreement and pass rates per tag, checked
against figures counted by hand; gold read through the one precedence; bounded queries; and the
``_tags.html`` partial, inert for hostile tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.urls import reverse

from labeling.jobs.tags import tag_breakdown, tags_context
from labeling.models import GoldLabel, GoldSource, Job, Label, SampleSet
from labeling.samples.services import import_sample_set
from labeling.samples.uploads import store_upload
from tests.conftest import PASSWORD
from tests.labeling.review.test_review import make_policy, make_version

pytestmark = pytest.mark.django_db

# (id, tag, expected label, A, B): t1 has 4 items, t2 has 2, t3 has 1; x has no expected label.
ROWS = [
    ("i1", "t1", 1, 1, 1),
    ("i2", "t1", 1, 0, 1),
    ("i3", "t1", 0, 0, 0),
    ("i4", "t1", 0, 1, 0),
    ("i5", "t2", 1, 1, 1),
    ("i6", "t2", "", 1, 0),
    ("i7", "<b>t3</b>", 0, 0, 0),
]


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


def tagged_set(author: Any, rows: list[tuple[Any, ...]] = ROWS) -> SampleSet:
    csv = "id,text,expected,topic\n" + "".join(
        f"{i},text of {i},{gold},{tag}\n" for i, tag, gold, *_ in rows
    )
    upload = store_upload(SimpleUploadedFile("tagged.csv", csv.encode()))
    return import_sample_set(
        upload=upload,
        name="tagged",
        by=author,
        text_column="text",
        id_column="id",
        label_column="expected",
        tag_column="topic",
    )


def finished_job(author: Any, sample_set: SampleSet, rows: list[tuple[Any, ...]] = ROWS) -> Job:
    version = make_version(make_policy(author), author)
    job = Job.objects.create(
        version=version,
        sample_set=sample_set,
        status="succeeded",
        text_a=version.text,
        text_b=version.twin_text,
        item_count=len(rows),
        created_by=author,
    )
    items = {i.external_id: i for i in sample_set.items.all()}
    for external_id, _, _, a, b in rows:
        for side, label in (("A", a), ("B", b)):
            Label.objects.create(job=job, item=items[external_id], side=side, label=label, p1=0.5)
    return Job.objects.select_related("version", "sample_set").get(pk=job.pk)


def test_figures_per_tag_match_the_counts_by_hand(author: Any) -> None:
    job = finished_job(author, tagged_set(author))
    # A reviewer's gold is newer than the import's expected label and wins: i4 becomes gold 1.
    item = job.sample_set.items.get(external_id="i4")
    GoldLabel.objects.create(
        policy=job.version.policy, item=item, label="1", decided_by=author, source=GoldSource.TYPED
    )
    breakdown = tag_breakdown(job)
    assert breakdown is not None and not breakdown.capped
    rows = {r.tag: r for r in breakdown.rows}
    assert [r.tag for r in breakdown.rows] == ["t1", "t2", "<b>t3</b>"]  # largest first

    t1 = rows["t1"]
    assert t1.n == 4
    assert t1.agreement.positive_rate_a == 2 / 4  # i1, i4
    assert t1.agreement.positive_rate_b == 2 / 4  # i1, i2
    assert t1.agreement.p_o == 2 / 4  # i1, i3 agree
    # Gold i1=1, i2=1, i3=0, i4=1 (the typed gold): A says 1,0,0,1 → 3 of 4; B 1,1,0,0 → 3 of 4.
    assert (t1.gold_a.n, t1.gold_a.accuracy) == (4, 3 / 4)
    assert (t1.gold_b.n, t1.gold_b.accuracy) == (4, 3 / 4)
    assert (t1.share_a, t1.agreement_pct, t1.pass_a) == ("50.0%", "50.0%", "75.0%")

    t2 = rows["t2"]  # i6 has no gold: two items, one scored
    assert (t2.n, t2.gold_a.n, t2.gold_a.accuracy, t2.gold_b.accuracy) == (2, 1, 1.0, 1.0)
    assert t2.agreement.p_o == 1 / 2
    assert breakdown.has_gold


def test_an_item_one_side_could_not_label_is_left_out_of_the_agreement_only(author: Any) -> None:
    rows = [("i1", "t1", 1, 1, None), ("i2", "t1", 1, 1, 1)]
    job = finished_job(author, tagged_set(author, rows), rows)
    breakdown = tag_breakdown(job)
    assert breakdown is not None
    (t1,) = breakdown.rows
    assert (t1.n, t1.agreement.n, t1.agreement.p_o) == (2, 1, 1.0)
    assert (t1.gold_a.n, t1.gold_b.n) == (2, 1)


def test_the_breakdown_is_one_query_and_a_set_without_tags_costs_none(
    author: Any, django_assert_num_queries: Any
) -> None:
    job = finished_job(author, tagged_set(author))
    with django_assert_num_queries(1):
        assert tag_breakdown(job) is not None

    csv = "id,text\na,first\nb,second\n"
    plain = import_sample_set(
        upload=store_upload(SimpleUploadedFile("p.csv", csv.encode())),
        name="plain",
        by=author,
        text_column="text",
        id_column="id",
    )
    rows = [("a", "", "", 1, 1), ("b", "", "", 0, 1)]
    untagged = finished_job(author, plain, rows)
    with django_assert_num_queries(0):
        assert tag_breakdown(untagged) is None


def test_with_more_tags_than_shown_only_the_largest_are_read(author: Any) -> None:
    sample_set = tagged_set(author)
    job = finished_job(author, sample_set)
    # As the import leaves it when a set has more distinct tags than it lists (TAGS_KEPT).
    report = sample_set.report
    report["tags"]["largest"] = [["t1", 4], ["t2", 2]]
    report["tags"]["distinct"] = 80
    SampleSet.objects.filter(pk=sample_set.pk).update(report=report)
    job = Job.objects.select_related("version", "sample_set").get(pk=job.pk)

    breakdown = tag_breakdown(job)
    assert breakdown is not None and breakdown.capped
    assert [r.tag for r in breakdown.rows] == ["t1", "t2"]
    assert [r.tag for r in tag_breakdown(job, limit=1).rows] == ["t1"]  # type: ignore[union-attr]


def test_a_running_job_has_no_breakdown(author: Any) -> None:
    job = finished_job(author, tagged_set(author))
    job.status = "running"
    assert tag_breakdown(job) is None


def test_the_partial_shows_each_tag_with_hostile_tags_inert(author: Any) -> None:
    job = finished_job(author, tagged_set(author))
    html = render_to_string("labeling/jobs/_tags.html", {"job": job, **tags_context(job)})
    assert 'id="tag-breakdown"' in html and "the column “topic”" in html
    assert html.count('class="tag-row"') == 3
    assert "<b>t3</b>" not in html and "&lt;b&gt;t3&lt;/b&gt;" in html
    assert "Pass A" in html and '<td class="num">50.0%</td>' in html
    assert render_to_string("labeling/jobs/_tags.html", {"tag_breakdown": None}).strip() == ""


def test_the_job_page_shows_the_breakdown_by_tag(client: Any, author: Any) -> None:
    job = finished_job(author, tagged_set(author))
    client.login(username=author.username, password=PASSWORD)
    page = client.get(reverse("labeling:job_detail", args=[job.pk])).content.decode()
    assert 'id="tag-breakdown"' in page and page.count('class="tag-row"') == 3
    assert "&lt;b&gt;t3&lt;/b&gt;" in page and "<b>t3</b>" not in page
