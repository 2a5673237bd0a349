"""What-if runs on the engine, scored by the CPU baseline in this process, checked against
figures computed by hand from the baseline's formula: the edit of the ambiguous clause makes
the two wordings agree on the items it decides, the fixed/broken/other lists follow the
constructed gold, the drops are before minus after; "Make it a version" makes one draft, once,
and that version's first job on the same items shows exactly the predicted agreement."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from labeling.models import ExplainItem, ExplainRun, ExplainStatus, Job, Label
from labeling.whatif import services
from labeling.whatif.services import WhatIfError, edited_texts
from labeling.whatif.summary import whatif_view
from tests.labeling.whatif.conftest import (
    CLAUSE,
    EDIT,
    GOLD,
    POLICY_A,
    POLICY_B,
    TEXTS,
    by_scorer,
    committed,
    deliver,
    formula_labels,
    make_decided_version,
    run_job,
    start_job,
)

pytestmark = pytest.mark.django_db

OLD = "- Harsh criticism of a book, a film or a restaurant."
EDITED_A = POLICY_A.replace(OLD, f"- {EDIT}")


def start(decided: Any, capture: Any, **kw: Any) -> ExplainRun:
    with committed(capture):
        return services.start_whatif(
            decided.version, clause_key=kw.pop("clause_key", CLAUSE),
            edit_a=kw.pop("edit_a", EDIT), by=None, **kw,
        )  # fmt: skip


def p_o(a: list[int], b: list[int]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def counts(labels: list[int], gold: list[str] = GOLD) -> dict[str, int]:
    pairs = [(g, x) for g, x in zip(gold, labels, strict=True) if g in ("0", "1")]
    return {
        "tp": sum(g == "1" and x == 1 for g, x in pairs),
        "fp": sum(g == "0" and x == 1 for g, x in pairs),
        "fn": sum(g == "1" and x == 0 for g, x in pairs),
        "tn": sum(g == "0" and x == 0 for g, x in pairs),
    }


def figures(c: dict[str, int]) -> dict[str, float]:
    return {
        "recall": c["tp"] / (c["tp"] + c["fn"]),
        "recall_0": c["tn"] / (c["tn"] + c["fp"]),
        "f1": 2 * c["tp"] / (2 * c["tp"] + c["fp"] + c["fn"]),
    }


@pytest.fixture
def decided(
    author: Any, sent: list, explain_sent: list, django_capture_on_commit_callbacks: Any,
    scorer: Any,
) -> Any:  # fmt: skip
    return make_decided_version(
        author, sent, explain_sent, django_capture_on_commit_callbacks, scorer
    )


def test_the_edit_fixes_the_ambiguous_clause_as_the_formula_predicts(
    decided: Any, explain_sent: list, django_capture_on_commit_callbacks: Any, scorer: Any,
    embedder: Any,
) -> None:  # fmt: skip
    a = formula_labels(embedder, POLICY_A, TEXTS)
    b = formula_labels(embedder, POLICY_B, TEXTS)
    after = formula_labels(embedder, EDITED_A, TEXTS)
    ids = [item.pk for item in decided.items]
    mismatches = [ids[i] for i in range(len(TEXTS)) if a[i] != b[i]]
    assert len(mismatches) == 3 and p_o(a, b) < 1.0 == p_o(after, b), "the constructed clause"
    # The attribution run names the clause as deciding each mismatch.
    assert set(
        ExplainItem.objects.filter(job=decided.job, clause_a=CLAUSE).values_list("item", flat=True)
    ) == set(mismatches)

    run = start(decided, django_capture_on_commit_callbacks)
    assert run.job_id == decided.job.pk and run.kind == "whatif" and run.variants == 3
    # Mismatches first, then gold items, then the rest: progress reaches the affected first.
    first = explain_sent[0]["items"]
    assert [i["item_id"] for i in first[:3]] == mismatches
    assert {v["key"] for v in explain_sent[0]["variants"]} == {"A", "B", "A*"}
    assert next(v["policy"] for v in explain_sent[0]["variants"] if v["key"] == "A*") == EDITED_A
    assert whatif_view(run).finished is False
    deliver(explain_sent, django_capture_on_commit_callbacks, by_scorer(scorer))
    run.refresh_from_db()
    assert run.status == ExplainStatus.SUCCEEDED and run.backend == "embedding"
    got = run.summary
    assert got["items"] == got["scored"] == len(TEXTS) and got["failed"] == 0
    assert got["weak"] is True and got["same_as_job"] is True
    assert got["affected"]["n"] == 3
    assert got["affected"]["before"]["agreement"] == 0.0
    assert got["affected"]["after"]["agreement"] == 1.0
    assert got["whole"]["n"] == len(TEXTS)
    assert got["whole"]["before"]["agreement"] == pytest.approx(p_o(a, b))
    assert got["whole"]["after"]["agreement"] == pytest.approx(p_o(after, b))
    assert got["whole"]["before"]["a1"] == pytest.approx(sum(a) / len(TEXTS))
    assert got["predicted"] == {"agreement": got["whole"]["after"]["agreement"], "n": len(TEXTS)}

    # Gold: side A before, A* after, against the constructed gold (11 items have 0/1 gold).
    before_c, after_c = counts(a), counts(after)
    assert got["gold"]["n"] == 11
    for key, value in before_c.items():
        assert got["gold"]["before"][key] == value
    for key, value in after_c.items():
        assert got["gold"]["after"][key] == value
    want_before, want_after = figures(before_c), figures(after_c)
    assert got["gold"]["before"]["f1"] == pytest.approx(want_before["f1"])
    assert got["gold"]["after"]["recall_0"] == pytest.approx(want_after["recall_0"])
    for drop, key in (("f1", "f1"), ("recall_1", "recall"), ("recall_0", "recall_0")):
        assert got["drops"][drop] == pytest.approx(want_before[key] - want_after[key])

    # Changed verdicts: the mocking of clothes fixed, the film review broken, the book other.
    film, book, clothes = ids[2], ids[4], ids[6]
    changed = got["changed"]
    assert [r["item"] for r in changed["fixed"]] == [clothes]
    assert [r["item"] for r in changed["broken"]] == [film]
    assert [r["item"] for r in changed["other"]] == [book]
    assert changed["fixed"][0] == {"item": clothes, "before": 0, "after": 1, "gold": "1"}
    assert (changed["fixed_count"], changed["broken_count"], changed["other_count"]) == (1, 1, 1)
    view = whatif_view(run)
    assert view.finished and view.changed["broken"][0]["text"] == TEXTS[2]


def test_gold_after_reads_the_edited_wording(
    decided: Any, explain_sent: list, django_capture_on_commit_callbacks: Any, scorer: Any,
    embedder: Any,
) -> None:  # fmt: skip
    """With the book review's gold 0 the edit fixes it (fp -> tn): the counts move, so "after"
    must read A*'s labels (with the fixture's gold one fix and one break cancel out)."""
    from labeling.models import Item

    book = decided.items[4]
    Item.objects.filter(pk=book.pk).update(expected_label=0)
    gold = [*GOLD[:4], "0", *GOLD[5:]]
    run = start(decided, django_capture_on_commit_callbacks)
    deliver(explain_sent, django_capture_on_commit_callbacks, by_scorer(scorer))
    run.refresh_from_db()
    a = formula_labels(embedder, POLICY_A, TEXTS)
    after = formula_labels(embedder, EDITED_A, TEXTS)
    before_c, after_c = counts(a, gold), counts(after, gold)
    assert before_c != after_c and after_c["tn"] == before_c["tn"] + 1
    got = run.summary["gold"]
    assert got["n"] == 12
    assert {k: got["before"][k] for k in before_c} == before_c
    assert {k: got["after"][k] for k in after_c} == after_c
    assert got["after"]["accuracy"] == pytest.approx(
        (after_c["tp"] + after_c["tn"]) / sum(after_c.values())
    )
    fixed = run.summary["changed"]["fixed"]
    assert {r["item"] for r in fixed} == {book.pk, decided.items[6].pk}


def test_make_it_a_version_once_and_its_first_job_shows_the_predicted_agreement(
    decided: Any, author: Any, sent: list, explain_sent: list,
    django_capture_on_commit_callbacks: Any, scorer: Any,
) -> None:  # fmt: skip
    run = start(decided, django_capture_on_commit_callbacks)
    deliver(explain_sent, django_capture_on_commit_callbacks, by_scorer(scorer))
    run.refresh_from_db()
    made = services.make_version(run, by=author, change_note="Narrow the second criterion.")
    assert made.number == 2 and made.parent_id == decided.version.pk
    assert made.text == EDITED_A and made.twin_text == POLICY_B and made.finalized_at is None
    assert CLAUSE in made.change_note and f"what-if run {run.pk}" in made.change_note
    assert made.change_note.startswith("Narrow the second criterion.")
    run.refresh_from_db()
    assert run.made_version_id == made.pk
    with pytest.raises(WhatIfError, match="already made a version"):
        services.make_version(run, by=author)
    assert made.policy.versions.count() == 2

    job = start_job(
        made, decided.job.sample_set, author, django_capture_on_commit_callbacks,
        seed=decided.job.sample_seed,
    )  # fmt: skip
    run_job(sent, django_capture_on_commit_callbacks, scorer)
    job = Job.objects.get(pk=job.pk)
    assert job.status == "succeeded"
    labeled = set(Label.objects.filter(job=job).values_list("item_id", flat=True))
    assert labeled == {item.pk for item in decided.items}  # the same items
    assert job.stats["n"] == run.summary["predicted"]["n"]
    assert job.stats["p_o"] == run.summary["predicted"]["agreement"]
    assert job.stats["kappa"] == run.summary["whole"]["after"]["kappa"]


def test_an_edit_of_the_twin_too_is_scored_against_the_edited_twin(
    decided: Any, explain_sent: list, django_capture_on_commit_callbacks: Any, scorer: Any,
    embedder: Any,
) -> None:  # fmt: skip
    twin_edit = "Making fun of a person's hair, face or outfit."
    edited_b = POLICY_B.replace("- Mocking the way a person looks or dresses.", f"- {twin_edit}")
    run = start(decided, django_capture_on_commit_callbacks, edit_b=twin_edit)
    assert run.variants == 4 and run.edit_b == twin_edit
    deliver(explain_sent, django_capture_on_commit_callbacks, by_scorer(scorer))
    run.refresh_from_db()
    after_a = formula_labels(embedder, EDITED_A, TEXTS)
    after_b = formula_labels(embedder, edited_b, TEXTS)
    assert run.summary["whole"]["after"]["agreement"] == pytest.approx(p_o(after_a, after_b))


def test_a_failed_chunk_leaves_an_honest_partial_table(
    decided: Any, explain_sent: list, django_capture_on_commit_callbacks: Any, scorer: Any,
) -> None:  # fmt: skip
    from tests.labeling.probes.conftest import by_rule

    with override_settings(COPE_CHUNK_SIZE=5):
        run = start(decided, django_capture_on_commit_callbacks)
    assert run.chunk_count == 3
    failing = by_rule(lambda key, text: (None, None), error="CUDA out of memory")
    first = explain_sent.pop(0)
    with committed(django_capture_on_commit_callbacks):
        from labeling.tasks import record_explain

        assert record_explain(failing(first)) == "failed"
    deliver(explain_sent, django_capture_on_commit_callbacks, by_scorer(scorer))
    run.refresh_from_db()
    assert run.status == ExplainStatus.PARTIAL and "CUDA out of memory" in run.error
    got = run.summary
    assert (got["items"], got["scored"], got["failed"]) == (12, 7, 5)
    # The first chunk held the three affected items: none was scored, and the table says so.
    assert got["affected"]["n"] == 0 and got["affected"]["before"]["agreement"] is None
    assert got["whole"]["n"] == got["predicted"]["n"] == 7
    # A what-if run carries the deciding job, but only attribution writes conclusions on it.
    assert not ExplainItem.objects.filter(run=run).exists()


def test_every_item_failed_leaves_a_failed_run_with_an_empty_table(
    decided: Any, explain_sent: list, django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    from tests.labeling.probes.conftest import by_rule

    run = start(decided, django_capture_on_commit_callbacks)
    deliver(explain_sent, django_capture_on_commit_callbacks, by_rule(lambda k, t: (None, None)))
    run.refresh_from_db()
    assert run.status == ExplainStatus.FAILED
    assert (run.summary["scored"], run.summary["failed"]) == (0, 12)
    assert run.summary["whole"]["after"]["agreement"] is None
    assert whatif_view(run).finished is False  # a failed run shows its error, not a table


# Validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clause_key", "edit_a", "message"),
    [
        ("label/IN/includes/9", EDIT, "has no clause “label/IN/includes/9”"),
        (CLAUSE, "   ", "is empty"),
        (CLAUSE, "Harsh  criticism of a book, a film or a restaurant.", "the same as the old one"),
        (CLAUSE, OLD, "the same as the old one"),
        (CLAUSE, "- One thing.\n- Another thing.", "does not read as one clause"),
        (CLAUSE, "One thing.\n#### Excludes\n- Another.", "does not read as one clause"),
    ],
)
def test_an_unusable_edit_is_refused_with_the_reason(
    clause_key: str, edit_a: str, message: str
) -> None:
    with pytest.raises(WhatIfError, match=message):
        edited_texts(POLICY_A, POLICY_B, clause_key=clause_key, edit_a=edit_a)


def test_an_edit_over_the_context_limit_is_refused(settings: Any) -> None:
    settings.COPE_TOKENIZER = ""
    settings.COPE_CONTEXT_LIMIT = 1000
    edited_texts(POLICY_A, POLICY_B, clause_key=CLAUSE, edit_a=EDIT)  # fits
    with pytest.raises(WhatIfError, match="COPE_CONTEXT_LIMIT"):
        edited_texts(POLICY_A, POLICY_B, clause_key=CLAUSE, edit_a="insult " * 600)


def test_a_twin_edit_needs_an_aligned_clause() -> None:
    twin = POLICY_B.replace("- Mocking the way a person looks or dresses.\n", "")
    with pytest.raises(WhatIfError, match="no clause aligned"):
        edited_texts(POLICY_A, twin, clause_key=CLAUSE, edit_a=EDIT, edit_b="Something else.")


def test_a_version_without_a_deciding_job_is_refused(author: Any) -> None:
    from tests.labeling.conftest import make_version

    version = make_version(author)
    with pytest.raises(WhatIfError, match="no deciding job"):
        services.start_whatif(version, clause_key="overview", edit_a="Anything.", by=author)
    assert not ExplainRun.objects.filter(kind="whatif").exists()
