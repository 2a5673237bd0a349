"""Probe runs on the engine, scored by the CPU baseline in this process (the worker's own
``explain_request``), checked against figures computed by hand from the baseline's formula:
the inversion flips every item whose 1 came from the label's Includes, a criterion no item's
maximum uses is dead, the off-topic control leaks exactly what the formula predicts. Then the
engine's bookkeeping: chunks, resend and give-up, cancel, carve-outs, findings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from labeling.explain import services as explain_services
from labeling.jobs.broker import BrokerView
from labeling.models import (
    Carveout,
    ChunkStatus,
    ExplainChunk,
    ExplainItem,
    ExplainRun,
    ExplainScore,
    ExplainStatus,
)
from labeling.probes import services, summary
from labeling.probes.record import probe_variants
from labeling.run_scores import run_scores
from tests.labeling.probes.conftest import (
    DEAD,
    PROBE_POLICY,
    TAGS,
    TEXTS,
    by_rule,
    by_scorer,
    committed,
    deliver,
    formula_labels,
    make_probe_version,
)
from worker.clauses import parse_clauses
from worker.probes import control_policy, drop_label, invert_label
from worker.variants import distinct

pytestmark = pytest.mark.django_db


def start(version: Any, capture: Any, **kw: Any) -> ExplainRun:
    with committed(capture):
        return services.start_probe(version, by=kw.pop("by", None), **kw)


def probe_by_formula(embedder: Any) -> dict[str, list[int]]:
    """Labels of TEXTS under the texts a probe scores, each from the formula by hand."""
    texts = {"P": PROBE_POLICY, "OFF": control_policy(PROBE_POLICY)}
    for code in ("AB", "TH"):
        texts[f"INV:{code}"] = invert_label(PROBE_POLICY, code)
        texts[f"DROP:{code}"] = drop_label(PROBE_POLICY, code)
    return {key: formula_labels(embedder, text, TEXTS) for key, text in texts.items()}


def ids_where(version: Any, flags: list[bool]) -> list[int]:
    items = list(version.policy.evaluation.sample_set.items.order_by("row_number"))
    return sorted(item.pk for item, flag in zip(items, flags, strict=True) if flag)


def test_the_baseline_probe_gives_the_figures_its_formula_predicts(
    author: Any, probe_sent: list, django_capture_on_commit_callbacks: Any, scorer: Any,
    embedder: Any,
) -> None:  # fmt: skip
    version = make_probe_version(author)
    run = start(version, django_capture_on_commit_callbacks)
    assert deliver(probe_sent, django_capture_on_commit_callbacks, by_scorer(scorer)) == [
        "recorded"
    ]
    run.refresh_from_db()
    assert run.status == ExplainStatus.SUCCEEDED and run.backend == "embedding"
    got = run.summary
    want = probe_by_formula(embedder)
    p = want["P"]
    assert got["scored"] == len(TEXTS) and got["positive"] == sum(p) and got["weak"]

    # Topic leakage: exactly the items the formula labels 1 under the control.
    leaked = [bool(x) for x in want["OFF"]]
    assert got["leakage"]["count"] == sum(leaked) > 0, "the plant posts must leak"
    assert got["leakage"]["items"] == ids_where(version, leaked)
    assert got["leakage"]["n"] == len(TEXTS)

    # Inversion: every item whose 1 came from the label's Includes turns 0.
    by_label = {row["label"]: row for row in got["inversion"]}
    for code in ("AB", "TH"):
        came_from = [p[i] == 1 and want[f"DROP:{code}"][i] == 0 for i in range(len(TEXTS))]
        assert sum(came_from) > 0, code
        assert all(want[f"INV:{code}"][i] == 0 for i, f in enumerate(came_from) if f)
        row = by_label[code]
        assert row["expected"] == row["flipped"] == sum(came_from) and row["share"] == 1.0
        assert row["not_flipped"] == [] and row["low"] < 1.0 == row["high"]

    # Removal: dead exactly where the formula's label moves for no item.
    dead = set()
    for clause in parse_clauses(PROBE_POLICY):
        removed = PROBE_POLICY.splitlines(keepends=True)
        del removed[clause.start_line - 1 : clause.end_line]
        if formula_labels(embedder, "".join(removed), TEXTS) == p:
            dead.add(clause.key)
    assert DEAD in dead and "label/AB/includes/1" not in dead
    assert set(got["dead"]) == dead
    assert "label/AB/includes/1" in got["load_bearing"]

    # Per tag: scored, labeled 1, leaked.
    tags = {row["tag"]: row for row in got["tags"]}
    assert set(tags) == {t for t in TAGS if t}
    for tag, row in tags.items():
        rows = [i for i, t in enumerate(TAGS) if t == tag]
        assert row["n"] == len(rows) and row["positive"] == sum(p[i] for i in rows)
        assert row["leaked"] == sum(want["OFF"][i] for i in rows)
    steer = got["steerability"]
    assert steer["flips"]["observed"] == steer["flips"]["expected"] > 0
    assert steer["stable"] is None and got["rewording"] is None


ONE_LABEL = PROBE_POLICY.split("\n### (TH)")[0] + "\n"


def test_a_one_label_policys_probe_expects_every_positive_to_flip(
    author: Any, probe_sent: list, django_capture_on_commit_callbacks: Any, scorer: Any,
    embedder: Any,
) -> None:  # fmt: skip
    """DROP:AB leaves AB's Includes heading with nothing under it: the baseline reads that as
    nothing included (not as its label name), so every item labeled 1 under ``P`` turns 0
    and the inversion has that many flips to expect."""
    version = make_probe_version(author, text=ONE_LABEL)
    start(version, django_capture_on_commit_callbacks)
    deliver(probe_sent, django_capture_on_commit_callbacks, by_scorer(scorer))
    got = ExplainRun.objects.get(version=version).summary
    positive = formula_labels(embedder, ONE_LABEL, TEXTS)
    assert got["positive"] == sum(positive) > 0
    (row,) = got["inversion"]
    inverted = formula_labels(embedder, invert_label(ONE_LABEL, "AB"), TEXTS)
    flips = sum(1 for p, i in zip(positive, inverted, strict=True) if p == 1 and i == 0)
    assert (row["label"], row["expected"], row["flipped"]) == ("AB", sum(positive), flips)
    assert got["steerability"]["flips"]["expected"] == sum(positive)


def test_a_probe_sends_its_distinct_variants_and_keeps_scores_not_conclusions(
    author: Any, probe_sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    version = make_probe_version(author)
    run = start(version, django_capture_on_commit_callbacks, by=author)
    keys = [v.key for v in distinct(probe_variants(PROBE_POLICY))]
    assert (run.kind, run.job, run.version, run.attempt) == ("probe", None, version, 1)
    assert run.variants == len(keys) and run.requested_by == author
    assert [s["key"] for s in run.variant_specs] == keys
    assert [v["key"] for v in probe_sent[0]["variants"]] == keys
    assert len(probe_sent[0]["items"]) == run.items_total == len(TEXTS)
    assert "P-:label/TH/includes/1" not in keys  # the same text as DROP:TH: scored once
    deliver(probe_sent, django_capture_on_commit_callbacks, by_rule(lambda k, t: (1, 1.0)))
    run.refresh_from_db()
    assert run.scores == len(list(run_scores([run.pk]))) == len(keys) * len(TEXTS)
    assert not ExplainScore.objects.filter(run=run).exists()  # one document a chunk
    assert not ExplainItem.objects.exists()
    assert run.summary["clauses"][-1]["key"] == "label/TH/includes/1"  # read through DROP:TH
    assert summary.latest_probe(version) == summary.version_probe(version) == run


def test_without_an_evaluation_set_a_probe_says_so(author: Any, probe_sent: list) -> None:
    from labeling.models import PolicyEvaluation

    version = make_probe_version(author)
    PolicyEvaluation.objects.all().delete()
    with pytest.raises(services.ProbeError, match="no evaluation set"):
        services.start_probe(version, by=author)
    assert not ExplainRun.objects.exists() and probe_sent == []


def test_a_large_set_is_sampled_the_same_way_each_time_and_one_probe_runs_at_a_time(
    author: Any, probe_sent: list, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.COPE_PROBE_ITEMS = 4
    version = make_probe_version(author)
    first = start(version, django_capture_on_commit_callbacks)
    assert first.items_total == 4
    with pytest.raises(services.ProbeError, match="still running"):
        services.start_probe(version, by=author)
    assert services.cancel_probe(first) and not services.cancel_probe(first)
    second = start(version, django_capture_on_commit_callbacks)
    assert second.attempt == 2

    def items(run: ExplainRun) -> list[int]:
        return [i for c in ExplainChunk.objects.filter(run=run) for i in c.item_ids]

    assert items(first) == items(second) and len(set(items(first))) == 4


def test_a_lost_probe_chunk_is_sent_again_then_given_up_and_a_late_answer_still_counts(
    author: Any,
    probe_sent: list,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.COPE_MAX_CHUNK_ATTEMPTS = 2
    view = BrokerView(queued=frozenset(), held=frozenset(), model_workers=1)
    monkeypatch.setattr(explain_services.broker, "look", lambda: view)
    run = start(make_probe_version(author), django_capture_on_commit_callbacks)
    chunk = ExplainChunk.objects.get(run=run)
    probe_sent.clear()
    old = timezone.now() - timedelta(hours=1)
    ExplainChunk.objects.filter(pk=chunk.pk).update(sent_at=old)
    with committed(django_capture_on_commit_callbacks):
        assert explain_services.resume_stalled_runs() == {run.pk: 1}
    assert [(r["run_id"], r["attempt"]) for r in probe_sent] == [(run.pk, 2)]
    ExplainChunk.objects.filter(pk=chunk.pk).update(sent_at=old)
    with committed(django_capture_on_commit_callbacks):
        explain_services.resume_stalled_runs()
    chunk.refresh_from_db()
    run.refresh_from_db()
    assert chunk.status == ChunkStatus.FAILED and "start the run again" in chunk.error
    assert run.status == ExplainStatus.FAILED and run.items_failed == len(TEXTS)
    assert not ExplainItem.objects.exists() and summary.version_probe(run.version) is None
    assert run.summary["scored"] == 0  # a failed probe still says what it scored
    # The given-up chunk's answer still arrives: it is recorded and the summary rewritten.
    deliver(probe_sent, django_capture_on_commit_callbacks, by_rule(lambda k, t: (0, -1.0)))
    run.refresh_from_db()
    assert run.status == ExplainStatus.SUCCEEDED and run.items_done == len(TEXTS)
    assert run.summary["scored"] == len(TEXTS) and summary.version_probe(run.version) == run


def test_a_chunk_that_fails_fails_the_probe_with_the_workers_error(
    author: Any, probe_sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    run = start(make_probe_version(author), django_capture_on_commit_callbacks)
    deliver(
        probe_sent, django_capture_on_commit_callbacks, by_rule(lambda k, t: (1, 1.0), error="OOM")
    )
    run.refresh_from_db()
    assert run.status == ExplainStatus.FAILED and run.error == "OOM"
    assert not ExplainItem.objects.exists()


def test_signed_off_carveouts_and_a_rewording_are_scored_and_counted(
    author: Any, probe_sent: list, django_capture_on_commit_callbacks: Any, scorer: Any,
    embedder: Any,
) -> None:  # fmt: skip
    version = make_probe_version(author)
    run = start(version, django_capture_on_commit_callbacks)
    deliver(probe_sent, django_capture_on_commit_callbacks, by_scorer(scorer))
    run.refresh_from_db()
    items = list(version.policy.evaluation.sample_set.items.order_by("row_number"))
    insult, threat, weather = items[0], items[2], items[5]
    # The criterion is the item's own words: under the formula its Excludes match is 1.0.
    exact = Carveout.objects.create(
        run=run, item=insult, label="AB", criterion=insult.text, status="approved"
    )
    Carveout.objects.create(run=run, item=threat, label="TH", criterion="x", status="rejected")
    Carveout.objects.create(run=run, item=weather, label="AB", criterion="y")  # proposed
    reworded = PROBE_POLICY.replace("Insults calling", "Abusive words calling")
    ExplainRun.objects.filter(pk=run.pk).update(rewording=reworded)
    run.refresh_from_db()
    with committed(django_capture_on_commit_callbacks):
        child = services.start_carveout_run(run, by=author)
    assert (child.kind, child.parent, child.items_total) == ("carveout", run, len(TEXTS) + 1)
    sent = {tuple(v["key"] for v in r["variants"]): r["items"] for r in probe_sent}
    assert [i["item_id"] for i in sent[(f"CO:{exact.pk}",)]] == [insult.pk]
    assert len(sent[("TW",)]) == len(TEXTS)
    deliver(probe_sent, django_capture_on_commit_callbacks, by_scorer(scorer))
    child.refresh_from_db()
    exact.refresh_from_db()
    run.refresh_from_db()
    assert child.status == ExplainStatus.SUCCEEDED
    carved = formula_labels(
        embedder, ExplainRun.objects.get(pk=child.pk).variant_specs[1]["policy"], [insult.text]
    )
    assert exact.label_after == carved[0] == 0 and exact.p1_after is not None
    counts = run.summary["carveouts"]
    assert counts == {"proposed": 1, "approved": 1, "rejected": 1, "scored": 1, "flipped": 1}
    p = formula_labels(embedder, PROBE_POLICY, TEXTS)
    tw = formula_labels(embedder, reworded, TEXTS)
    unchanged = sum(a == b for a, b in zip(p, tw, strict=True))
    assert run.summary["rewording"]["unchanged"] == unchanged
    assert run.summary["rewording"]["n"] == len(TEXTS)
    steer = run.summary["steerability"]
    inv = run.summary["inversion"]
    assert steer["flips"]["expected"] == sum(r["expected"] for r in inv) + 1
    assert steer["flips"]["observed"] == sum(r["flipped"] for r in inv) + 1
    assert steer["stable"]["unchanged"] == unchanged
    with pytest.raises(services.ProbeError, match="No signed-off carve-out"):
        services.start_carveout_run(run, by=author)
    assert services.summarize_probe(child.pk) == run.summary  # a child's figures: its parent's


def test_findings_warn_on_leakage_and_dead_clauses_and_the_gate_refuses(
    author: Any, probe_sent: list, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    version = make_probe_version(author)
    assert summary.probe_findings(version).run is None
    run = start(version, django_capture_on_commit_callbacks)

    def rule(key: str, text: str) -> tuple[int, float]:
        if key == "OFF":
            return (1, 1.0) if "fern" in text else (0, -1.0)
        if key in ("P-:label/AB/includes/1", "INV:AB", "DROP:AB"):  # the 1 came from AB
            return 0, -1.0
        return (1, 1.0) if "worthless" in text else (0, -1.0)

    deliver(probe_sent, django_capture_on_commit_callbacks, by_rule(rule))
    settings.COPE_PROBE_MAX_LEAKAGE = 0.05
    found = summary.probe_findings(version)
    assert found.run == ExplainRun.objects.get(pk=run.pk)
    assert found.leakage_share == pytest.approx(0.1) and found.leakage_over
    assert "label/AB/includes/1" not in [c["key"] for c in found.dead]
    assert DEAD in [c["key"] for c in found.dead] and len(found.warnings) == 2
    assert "Topic leakage: 1 of 10 items" in found.warnings[0] and not found.refuse
    version.policy.probe_gate = True
    version.policy.save(update_fields=["probe_gate"])
    assert summary.probe_findings(version).refuse
    settings.COPE_PROBE_MAX_LEAKAGE = 0.5
    assert len(summary.probe_findings(version).warnings) == 1
    series = summary.steerability_series(version.policy)
    assert series == {version.pk: run.__class__.objects.get(pk=run.pk).summary["steerability"]}
    flips = series[version.pk]["flips"]
    assert (flips["observed"], flips["expected"], flips["share"]) == (1, 1, 1.0)
