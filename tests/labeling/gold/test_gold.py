"""Gold labels from three sources, and each side of a job scored against them."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.gold.services import GoldError, job_gold_report, misses, set_gold
from labeling.models import GoldLabel, GoldSource, Item, Job, Label, SampleSet
from labeling.scoring import GoldScore, score_from_counts
from tests.labeling.review.test_review import make_item, make_policy, make_version


def build_job(author: Any, rows: list[tuple[int | None, int | None, int | None]], **kw: Any) -> Job:
    """A finished job: one item per row of (expected label at import, label A, label B)."""
    version = kw.pop("version", None) or make_version(make_policy(author), author)
    sample_set = SampleSet.objects.create(name=f"s{SampleSet.objects.count()}", created_by=author)
    job = Job.objects.create(
        version=version,
        sample_set=sample_set,
        status="succeeded",
        text_a=version.text,
        text_b=version.twin_text,
        item_count=len(rows),
        created_by=author,
    )
    for i, (expected, a, b) in enumerate(rows):
        item = make_item(sample_set, f"content {i}", i)
        Item.objects.filter(pk=item.pk).update(expected_label=expected)
        for side, label in (("A", a), ("B", b)):
            Label.objects.create(
                job=job,
                item=item,
                side=side,
                label=label,
                p1=None if label is None else (0.8 if label else 0.2),
                error="" if label is not None else "too long",
            )
    return job


def test_scores_match_sklearn_definitions_computed_by_hand() -> None:
    # y_true = [1,1,1,0,0,0,0,1], y_pred = [1,0,1,1,0,0,0,1]: tp 3, fn 1, fp 1, tn 3
    score = GoldScore(tp=3, fp=1, fn=1, tn=3)
    assert score.accuracy == 6 / 8
    assert score.precision == 3 / 4
    assert score.recall == 3 / 4
    assert score.f1 == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    # Nothing predicted 1: precision undefined (sklearn: 0.0 with a warning), recall 0.
    none_said = GoldScore(tp=0, fp=0, fn=2, tn=5)
    assert none_said.precision is None and none_said.recall == 0.0 and none_said.f1 == 0.0
    assert GoldScore(0, 0, 0, 4).f1 is None
    assert score_from_counts({("1", 1): 2, ("u", 1): 5, (None, 0): 9}) == GoldScore(2, 0, 0, 0)


def test_import_column_is_gold_for_each_side(author: Any) -> None:
    #        expected, A, B
    rows = [
        (1, 1, 1),  # tp A, tp B
        (1, 0, 1),  # fn A, tp B
        (0, 1, 0),  # fp A, tn B
        (0, 0, 0),  # tn, tn
        (0, 0, 1),  # tn A, fp B
        (None, 1, 0),  # no gold
        (1, None, 1),  # A could not label; tp B
    ]
    job = build_job(author, rows)

    report = job_gold_report(job)

    a, b = report.sides["A"], report.sides["B"]
    assert (a.score.tp, a.score.fp, a.score.fn, a.score.tn) == (1, 1, 1, 2)
    assert (b.score.tp, b.score.fp, b.score.fn, b.score.tn) == (3, 1, 0, 2)
    assert a.no_gold == 1 and b.no_gold == 1
    assert a.unlabeled == 1 and b.unlabeled == 0
    assert a.score.f1 == pytest.approx(2 / 4)
    assert b.score.precision == pytest.approx(3 / 4) and b.score.recall == 1.0
    assert a.few and report.gold_items == 6


def test_newest_gold_wins_and_undecidable_is_counted_apart(author: Any) -> None:
    job = build_job(author, [(1, 1, 1), (0, 1, 1), (None, 0, 0)])
    items = list(Item.objects.filter(sample_set=job.sample_set).order_by("row_number"))
    policy = job.version.policy

    set_gold(policy=policy, item=items[0], label="0", source=GoldSource.TYPED, by=author)
    set_gold(policy=policy, item=items[1], label="u", source=GoldSource.TYPED, by=author)
    set_gold(policy=policy, item=items[2], label="1", source=GoldSource.REVIEW, by=author)
    set_gold(policy=policy, item=items[2], label="0", source=GoldSource.TYPED, by=author)

    a = job_gold_report(job).sides["A"]
    # item 0: typed 0 beats imported 1 → fp; item 1: u, apart; item 2: typed 0 → tn.
    assert (a.score.tp, a.score.fp, a.score.fn, a.score.tn) == (0, 1, 0, 1)
    assert a.undecidable == 1 and a.no_gold == 0
    assert GoldLabel.objects.get(item=items[2]).source == GoldSource.TYPED
    assert GoldLabel.objects.filter(policy=policy).count() == 3


def test_gold_belongs_to_one_policy(author: Any) -> None:
    job = build_job(author, [(None, 1, 1)])
    other = make_policy(author)
    item = Item.objects.get(sample_set=job.sample_set)
    set_gold(policy=other, item=item, label="1", source=GoldSource.TYPED, by=author)

    assert job_gold_report(job).sides["A"].no_gold == 1


def test_misses_list_false_positives_and_negatives_with_content(author: Any) -> None:
    job = build_job(author, [(0, 1, 0), (1, 0, 1), (1, 1, 1), (0, 1, 1)])

    fps = misses(job, side="A", kind="fp")
    fns = misses(job, side="A", kind="fn")

    assert [m["item__text"] for m in fps] == ["content 0", "content 3"]
    assert [m["item__text"] for m in fns] == ["content 1"]
    assert fps[0]["gold_source"] == "import"
    assert misses(job, side="B", kind="fn") == []


def test_set_gold_refuses_unknown_labels(author: Any) -> None:
    job = build_job(author, [(None, 1, 1)])
    item = Item.objects.get(sample_set=job.sample_set)
    with pytest.raises(GoldError):
        set_gold(policy=job.version.policy, item=item, label="2", source="typed", by=author)
    with pytest.raises(GoldError):
        set_gold(policy=job.version.policy, item=item, label="1", source="import", by=author)
