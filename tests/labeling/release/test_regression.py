"""The regression gate at finalize: a version against the policy's last finalized one on the
gold items both deciding jobs labeled; refuse beyond the tolerance unless an admin gives a
reason; the diff frozen into the evidence and carried by the bundle; the clause run."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.explain.dispatch import job_variants
from labeling.models import (
    ExplainChunk,
    ExplainRun,
    ExplainScore,
    ExplainStatus,
    Job,
    JobStatus,
    Label,
    RunKind,
    SampleSet,
)
from labeling.release import exports, regression_run
from labeling.release.finalize import NotReady, finalize, finalize_readiness
from labeling.release.regression import compare
from policies.bundle import BundleError, import_bundle, read_bundle
from policies.models import Policy, PolicySettingChange, SettingPath, Version
from tests.conftest import POLICY_TEXT
from tests.labeling.probes.conftest import by_rule, deliver
from tests.labeling.release.test_finalize import stats
from tests.labeling.review.test_review import make_item, make_policy, make_version
from tests.policies.test_settings_audit import admin_form

HTMX = {"HTTP_HX_REQUEST": "true"}
CHANGED = "label/HA1/includes/2"
NEW_TEXT = POLICY_TEXT.replace(
    "- Threats of harm against a **Target**.",
    "- Threats of harm against a **Target**, <b>only</b> when said in earnest.",
)

# Ten gold items: five gold 1, five gold 0. The baseline gets all right but item 5 (a gold 0
# said 1); the new version fixes item 5 and breaks items 0 and 1 (gold 1 said 0).
GOLD = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
OLD = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
NEW = [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]


@pytest.fixture
def eval_set(author: Any) -> SampleSet:
    return SampleSet.objects.create(name="Evaluation set", created_by=author)


def gold_items(eval_set: SampleSet, gold: list[int], start: int = 0) -> list[Any]:
    items = []
    for i, g in enumerate(gold, start=start):
        item = make_item(eval_set, f"gold content {i} <script>alert('x')</script>", i)
        item.expected_label = g
        item.save(update_fields=["expected_label"])
        items.append(item)
    return items


def labeled_job(version: Version, author: Any, eval_set: SampleSet, labels: dict[Any, int]) -> Job:
    """A succeeded twin job on the evaluation set that labeled ``labels`` on both sides (no
    mismatch, so nothing to review) and meets the gate by its stats."""
    job = Job.objects.create(
        version=version,
        sample_set=eval_set,
        status=JobStatus.SUCCEEDED,
        text_a=version.text,
        text_b=version.twin_text,
        item_count=len(labels),
        stats=stats(250, 248 / 250),
        created_by=author,
        finished_at=timezone.now(),
    )
    Label.objects.bulk_create(
        Label(job=job, item=item, side=side, label=label, p1=0.9 if label else 0.1)
        for item, label in labels.items()
        for side in ("A", "B")
    )
    return job


@pytest.fixture
def policy(author: Any) -> Policy:
    return make_policy(author, agreement_threshold=0.95, min_sample_size=200)


@pytest.fixture
def items(eval_set: SampleSet) -> list[Any]:
    return gold_items(eval_set, GOLD)


@pytest.fixture
def baseline(policy: Policy, author: Any, admin_user: Any, eval_set: SampleSet, items: Any) -> Any:
    v1 = make_version(policy, author)
    labeled_job(v1, author, eval_set, dict(zip(items, OLD, strict=True)))
    return finalize(version=v1, by=admin_user)


@pytest.fixture
def regressed(baseline: Any, policy: Policy, author: Any, eval_set: SampleSet, items: Any) -> Any:
    v2 = make_version(policy, author, text=NEW_TEXT)
    labeled_job(v2, author, eval_set, dict(zip(items, NEW, strict=True)))
    return v2


def admin_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def panel(client: Client, version: Any) -> str:
    url = reverse("labeling:finalize_panel", args=[version.pk])
    return str(client.get(url, **HTMX).content.decode())


# --- the diff ---------------------------------------------------------------------------------


def test_no_finalized_version_before_means_no_gate(
    policy: Policy, author: Any, eval_set: SampleSet, items: Any
) -> None:
    v1 = make_version(policy, author)
    labeled_job(v1, author, eval_set, dict(zip(items, NEW, strict=True)))

    readiness = finalize_readiness(v1)

    assert readiness.ok and not readiness.regression_refused
    assert readiness.regression is not None and readiness.regression.baseline is None
    assert readiness.regression.note.startswith("No version of this policy was finalized")


def test_the_diff_counts_fixed_and_broken_and_the_drops(regressed: Any, baseline: Any) -> None:
    diff = compare(regressed)

    assert diff.baseline == baseline and diff.n == 10
    # Before: tp 5 fp 1 fn 0 tn 4; after: tp 3 fp 0 fn 2 tn 5.
    assert diff.before["f1"] == pytest.approx(10 / 11)
    assert diff.after["f1"] == pytest.approx(0.75)
    assert diff.before["recall_1"] == 1.0 and diff.after["recall_1"] == pytest.approx(0.6)
    assert diff.before["recall_0"] == pytest.approx(0.8) and diff.after["recall_0"] == 1.0
    assert diff.drops == {"f1": pytest.approx(10 / 11 - 0.75, abs=1e-6), "recall_1": 0.4,
                          "recall_0": -0.2}  # fmt: skip
    changed = diff.changed
    assert (changed["fixed_count"], changed["broken_count"], changed["other_count"]) == (1, 2, 0)
    assert [r["before"] for r in changed["broken"]] == [1, 1]
    assert [r["after"] for r in changed["fixed"]] == [0]
    assert diff.refused


def test_finalize_refuses_a_drop_beyond_tolerance_and_names_the_broken_items(
    regressed: Any, admin_user: Any, items: Any
) -> None:
    readiness = finalize_readiness(regressed)

    assert not readiness.ok and readiness.overridable and readiness.regression_refused
    (line,) = readiness.missing
    assert "Against v1, the last finalized version, on 10 gold items" in line
    assert "recall of 1 fell 40%" in line and "gold F1 fell" in line
    assert f"Broken against gold: {items[0].external_id}, {items[1].external_id}." in line
    with pytest.raises(NotReady, match="No override reason was given"):
        finalize(version=regressed, by=admin_user)
    regressed.refresh_from_db()
    assert not regressed.is_finalized


def test_the_tolerance_is_the_policy_s(regressed: Any, policy: Policy) -> None:
    Policy.objects.filter(pk=policy.pk).update(regression_tolerance=0.4)
    regressed.policy.refresh_from_db()
    assert finalize_readiness(regressed).ok  # drops of 40% and 16%: none beyond 40%

    Policy.objects.filter(pk=policy.pk).update(regression_tolerance=0.39)
    regressed.policy.refresh_from_db()
    assert not finalize_readiness(regressed).ok


def test_a_regression_and_a_hard_condition_cannot_be_overridden(
    regressed: Any, admin_user: Any
) -> None:
    Job.objects.filter(version=regressed).update(stats=stats(250, 0.5))

    readiness = finalize_readiness(regressed)

    assert not readiness.overridable
    with pytest.raises(NotReady):
        finalize(version=regressed, by=admin_user, override_reason="ship it")


def test_an_admin_override_freezes_the_diff_into_the_evidence_and_the_bundle(
    regressed: Any, admin_user: Any, items: Any
) -> None:
    finalized = finalize(version=regressed, by=admin_user, override_reason="known trade-off")

    evidence = finalized.finalize_evidence["regression"]
    assert finalized.finalize_override == "known trade-off"
    assert evidence["overridden"] and evidence["refused"]
    assert evidence["baseline"]["number"] == 1 and evidence["n"] == 10
    assert [r["item"] for r in evidence["changed"]["broken"]] == [items[0].pk, items[1].pk]
    assert evidence["drops"]["recall_1"] == 0.4

    data = exports.bundle(finalized.policy)
    exported = next(v for v in data["versions"] if v["number"] == 2)
    assert exported["finalize_evidence"]["regression"] == evidence
    assert data["policy"]["regression_tolerance"] == 0.02
    data["policy"] |= {"name": "Elsewhere", "slug": "elsewhere", "regression_tolerance": 0.05}
    result = import_bundle(
        read_bundle(io.BytesIO(json.dumps(data).encode())), by=admin_user, source="studio two"
    )
    imported = Version.objects.get(policy=result.policy, number=2)
    assert imported.imported_evidence["regression"] == evidence
    assert result.policy.regression_tolerance == 0.05

    page = panel(admin_client(admin_user), finalized)
    section = page[page.index(f'id="finalize-regression-{finalized.pk}"') :]
    assert "Regression at finalize" in section and items[0].external_id in section
    assert "despite the regression against v1" in page


@pytest.mark.parametrize(
    ("regression", "message"),
    [
        ("not an object", "“finalize_evidence.regression” must be an object"),
        ({"drops": {"f1": "a lot"}}, "“drops.f1” must be a number"),
        (
            {"changed": {"broken": [{"item": "x"}]}},
            "“changed.broken” must be a list of items with an id",
        ),
        ({"before": []}, "“before” must be an object"),
    ],
)
def test_a_malformed_regression_in_a_bundle_is_refused(
    regressed: Any, admin_user: Any, regression: Any, message: str
) -> None:
    finalize(version=regressed, by=admin_user, override_reason="known trade-off")
    data = exports.bundle(regressed.policy)
    data["policy"] |= {"name": "Elsewhere", "slug": "elsewhere"}
    data["versions"][1]["finalize_evidence"]["regression"] = regression

    with pytest.raises(BundleError) as refused:
        import_bundle(data, by=admin_user, source="studio two")

    assert message in str(refused.value)
    assert not Policy.objects.filter(slug="elsewhere").exists()


def test_the_diff_reads_are_bounded(
    regressed: Any, baseline: Any, author: Any, eval_set: SampleSet
) -> None:
    with CaptureQueriesContext(connection) as small:
        compare(regressed)
    more = gold_items(eval_set, [1] * 300, start=100)
    for version, label in ((baseline, 1), (regressed, 0)):
        job = Job.objects.get(version=version)
        Label.objects.bulk_create(
            Label(job=job, item=item, side=side, label=label) for item in more for side in "AB"
        )
    with CaptureQueriesContext(connection) as large:
        diff = compare(regressed)

    assert diff.changed["broken_count"] == 302 and len(diff.changed["broken"]) == 200
    assert len(large) == len(small)


# --- the panel and the clause run -------------------------------------------------------------


def fake_scores(run: ExplainRun, new: Version, old: Version) -> None:
    """What a model answers: each base its text's label; the swap of the edited clause gives
    the old label back (so that clause decides), every other variant the base's label."""
    labels = {item.pk: (n, o) for item, n, o in run_items(run)}
    rows = []
    for v in job_variants(new.text, old.text):
        if v.same_as:
            continue
        for item_id, (n, o) in labels.items():
            label = o if v.side == "B" or v.key == f"A<B:{CHANGED}" else n
            margin = (2.0 if label else -2.0) + (0.5 if v.key != v.side else 0.0)
            rows.append(
                ExplainScore(run=run, item_id=item_id, key=v.key, label=label, margin=margin)
            )
    ExplainScore.objects.bulk_create(rows)
    ExplainRun.objects.filter(pk=run.pk).update(status=ExplainStatus.SUCCEEDED)


def run_items(run: ExplainRun) -> list[tuple[Any, int, int]]:
    from labeling.models import Item

    ids = [i for c in ExplainChunk.objects.filter(run=run) for i in c.item_ids]
    by_pk = {item.pk: item for item in Item.objects.filter(pk__in=ids)}
    return [(by_pk[i], NEW[by_pk[i].row_number], OLD[by_pk[i].row_number]) for i in ids]


def test_the_panel_starts_one_clause_run_and_shows_each_clause_once_explained(
    regressed: Any,
    baseline: Any,
    admin_user: Any,
    explain_sent: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = admin_client(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        first = panel(client, regressed)
        panel(client, regressed)

    run = ExplainRun.objects.get(kind=RunKind.REGRESSION)
    assert run.version == regressed and run.baseline_version == baseline
    assert run.items_total == 3 and len(explain_sent) == run.chunk_count
    assert "being explained" in first and "&lt;script&gt;" in first and "<script>" not in first
    assert "Broken against gold" in first and "No override reason" not in first

    fake_scores(run, regressed, baseline)
    summary = regression_run.finish_regression(run.pk)

    assert {c["clause"] for c in summary["clauses"].values()} == {CHANGED}
    page = panel(client, regressed)
    assert "being explained" not in page
    assert page.count("decided by") == 3 and "Includes of (HA1), criterion 2" in page
    assert ExplainRun.objects.filter(kind=RunKind.REGRESSION).count() == 1


def test_a_failed_clause_run_is_started_again(
    regressed: Any, admin_user: Any, explain_sent: list[Any]
) -> None:
    client = admin_client(admin_user)
    panel(client, regressed)
    ExplainRun.objects.filter(kind=RunKind.REGRESSION).update(status=ExplainStatus.FAILED)

    panel(client, regressed)

    assert list(
        ExplainRun.objects.filter(kind=RunKind.REGRESSION)
        .order_by("attempt")
        .values_list("attempt", flat=True)
    ) == [1, 2]


def test_the_evidence_keeps_each_clause_the_run_found(
    regressed: Any, baseline: Any, admin_user: Any, explain_sent: list[Any]
) -> None:
    panel(admin_client(admin_user), regressed)
    run = ExplainRun.objects.get(kind=RunKind.REGRESSION)
    fake_scores(run, regressed, baseline)
    regression_run.finish_regression(run.pk)

    finalized = finalize(version=regressed, by=admin_user, override_reason="known trade-off")

    broken = finalized.finalize_evidence["regression"]["changed"]["broken"]
    assert [r["clause"] for r in broken] == [CHANGED, CHANGED]
    assert finalized.finalize_evidence["regression"]["run_id"] == run.pk


def test_the_panel_override_form_finalizes_a_regression(regressed: Any, admin_user: Any) -> None:
    client = admin_client(admin_user)
    page = panel(client, regressed)
    assert "despite the regression against the last finalized version" in page
    job = Job.objects.get(version=regressed)

    response = client.post(
        reverse("labeling:finalize", args=[regressed.pk]),
        {"job": job.pk, "override_reason": "accepted: fewer false positives"},
        **HTMX,
    )

    assert response.status_code == 204
    regressed.refresh_from_db()
    assert regressed.is_finalized
    assert regressed.finalize_evidence["regression"]["overridden"] is True


# --- the setting ------------------------------------------------------------------------------


def settings_post(policy: Policy, **changes: Any) -> dict[str, Any]:
    data = {
        "agreement_threshold": "95",
        "min_kappa": str(policy.min_kappa),
        "min_sample_size": str(policy.min_sample_size),
        "probe_gate": "warn",
        "evaluation_set": "",
    }
    return data | changes


def test_the_settings_page_sets_and_audits_the_tolerance(policy: Policy, admin_user: Any) -> None:
    client = admin_client(admin_user)
    url = reverse("labeling:policy_settings", args=[policy.pk])
    page = client.get(url).content.decode()
    assert 'id="current-regression-tolerance">2.0%' in page
    assert 'name="regression_tolerance" value="2"' in page

    # Raising the tolerance loosens the gate: without the confirmation nothing is saved.
    asked = client.post(url, settings_post(policy, regression_tolerance="5.5"))
    assert asked.status_code == 200 and "regression tolerance 2% → 5.5%" in asked.content.decode()
    assert Policy.objects.get(pk=policy.pk).regression_tolerance == 0.02

    response = client.post(url, settings_post(policy, regression_tolerance="5.5", confirm="on"))

    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.regression_tolerance == 0.055
    row = PolicySettingChange.objects.get(policy=policy)
    assert (row.field, row.old_value, row.new_value) == ("regression_tolerance", "2%", "5.5%")
    assert row.changed_by == admin_user and row.via == SettingPath.SETTINGS
    # Left out (older pages, scripts): kept. Out of range: refused, nothing saved.
    client.post(url, settings_post(policy))
    assert Policy.objects.get(pk=policy.pk).regression_tolerance == 0.055
    refused = client.post(url, settings_post(policy, regression_tolerance="150"))
    assert refused.status_code == 400
    assert Policy.objects.get(pk=policy.pk).regression_tolerance == 0.055


def test_the_admin_audits_the_tolerance(policy: Policy, admin_user: Any) -> None:
    data = admin_form(policy, regression_tolerance="0.1")

    response = admin_client(admin_user).post(
        reverse("admin:policies_policy_change", args=[policy.pk]), data
    )

    assert response.status_code == 302
    row = PolicySettingChange.objects.get(policy=policy)
    assert (row.field, row.old_value, row.new_value) == ("regression_tolerance", "2%", "10%")
    assert row.changed_by == admin_user and row.via == SettingPath.ADMIN


def test_the_clause_run_goes_through_the_engine(
    regressed: Any,
    admin_user: Any,
    explain_sent: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Chunks sent with the run's own variants, answered as a worker would, recorded by the
    engine until the run finishes; ``finish_regression`` (which the engine calls through
    ``labeling.runs.finish_run``) then names the edited clause for each item."""

    def rule(key: str, text: str) -> tuple[int, float]:
        row = int(text.split()[2])
        label = OLD[row] if key.startswith("B") or key == f"A<B:{CHANGED}" else NEW[row]
        return label, (2.0 if label else -2.0) + (0.0 if key in ("A", "B") else 0.5)

    with django_capture_on_commit_callbacks(execute=True):
        panel(admin_client(admin_user), regressed)
    actions = deliver(explain_sent, django_capture_on_commit_callbacks, by_rule(rule))

    run = ExplainRun.objects.get(kind=RunKind.REGRESSION)
    assert actions and set(actions) == {"recorded"}
    assert run.status == ExplainStatus.SUCCEEDED and run.items_done == 3
    summary = regression_run.finish_regression(run.pk)
    assert summary["explained"] == 3
    assert {c["where"] for c in summary["clauses"].values()} == {"Includes of (HA1), criterion 2"}
