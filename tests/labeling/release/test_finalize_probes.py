"""The probe at finalize: its findings warn (or, with the policy's probe gate, refuse unless an
admin states a reason), the panel shows them, and its figures are frozen into the evidence and
carried by the JSON bundle both ways."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.models import SampleSet
from labeling.release import exports
from labeling.release.finalize import NotReady, finalize, finalize_readiness
from policies.bundle import BundleError, import_bundle, read_bundle
from policies.models import Policy, Version
from tests.labeling.probes.test_probe_pages import make_probe_run, probe_summary
from tests.labeling.release import test_finalize as base
from tests.labeling.release.test_finalize import good_job, resolve_all, stats
from tests.labeling.review.test_review import make_policy, make_version

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def version(author: Any) -> Any:
    policy = make_policy(author, agreement_threshold=0.95, min_sample_size=200)
    return make_version(policy, author)


@pytest.fixture(autouse=True)
def _one_sample_set(monkeypatch: pytest.MonkeyPatch, author: Any) -> None:
    """Every job here runs on one set, the policy's evaluation set (as in ``test_finalize``)."""
    eval_set = SampleSet.objects.create(name="Evaluation set", created_by=author)
    original = base.make_job

    def on_eval_set(**kw: Any) -> Any:
        kw.setdefault("sample_set", eval_set)
        return original(**kw)

    monkeypatch.setattr(base, "make_job", on_eval_set)


@pytest.fixture
def ready(version: Any, author: Any) -> Any:
    """A version that meets every condition but the probe's."""
    resolve_all(good_job(version, author))
    return version


def set_gate(version: Any, refuse: bool) -> None:
    Policy.objects.filter(pk=version.policy_id).update(probe_gate=refuse)
    version.policy.refresh_from_db()


def panel(client: Client, version: Any) -> str:
    url = reverse("labeling:finalize_panel", args=[version.pk])
    return str(client.get(url, **HTMX).content.decode())


def admin_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


# --- warn ------------------------------------------------------------------------------------


def test_findings_warn_when_the_gate_is_off(ready: Any, admin_user: Any) -> None:
    make_probe_run(ready, probe_summary([], leaked=30))  # 15% leakage and a dead clause

    readiness = finalize_readiness(ready)

    assert readiness.ok and not readiness.probe_refused
    assert len(readiness.warnings) == 2
    assert readiness.warnings[0].startswith("Topic leakage: 30 of 198 items (15.2%)")
    assert "dead clause" in readiness.warnings[1]
    page = panel(admin_client(admin_user), ready)
    probe = page[page.index('id="finalize-probe-') :]
    assert "93.0% of expected flips observed (40 of 43" in probe
    assert "15.2% (30 of 198" in probe
    assert 'data-clause="term/1"' in probe and "Definition of Terms, term 1" in probe
    assert "Topic leakage: 30 of 198" in probe
    assert '<span class="badge ok">Ready</span>' in page


def test_finalize_with_warnings_freezes_the_probe_into_the_evidence(
    ready: Any, admin_user: Any
) -> None:
    run = make_probe_run(ready, probe_summary([], leaked=30))

    finalized = finalize(version=ready, by=admin_user)

    probe = finalized.finalize_evidence["probe"]
    assert probe["run_id"] == run.pk and probe["summary"] == run.summary
    assert probe["gate"] == "warn" and probe["overridden"] is False
    assert len(probe["warnings"]) == 2
    assert finalized.finalize_override == ""
    page = panel(admin_client(admin_user), finalized)
    assert "Probe at finalize" in page and "warned on findings" in page
    assert "40 of 43" in page


def test_no_probe_offers_one_and_freezes_none(ready: Any, admin_user: Any, author: Any) -> None:
    page = panel(admin_client(admin_user), ready)
    assert 'id="finalize-no-probe"' in page and 'id="finalize-probe-start"' in page
    assert f'action="{reverse("labeling:probe", args=[ready.pk])}"' in page
    reviewer_page = panel(Client(), ready)  # anonymous: sent to log in, no button
    assert 'id="finalize-probe-start"' not in reviewer_page

    finalized = finalize(version=ready, by=admin_user)

    assert finalized.finalize_evidence["probe"] is None
    assert "not probed when it was finalized" in panel(admin_client(admin_user), finalized)


# --- refuse and override ---------------------------------------------------------------------


def test_the_gate_refuses_findings_unless_an_admin_gives_a_reason(
    ready: Any, admin_user: Any
) -> None:
    set_gate(ready, True)
    make_probe_run(ready, probe_summary([], leaked=30))

    readiness = finalize_readiness(ready)
    assert not readiness.ok and readiness.probe_refused and readiness.overridable
    assert readiness.missing[0].startswith("The policy's probe gate refuses")
    assert "Topic leakage: 30 of 198" in readiness.missing[0]
    with pytest.raises(NotReady) as refused:
        finalize(version=ready, by=admin_user)
    assert refused.value.readiness.missing[-1] == "No override reason was given."
    ready.refresh_from_db()
    assert not ready.is_finalized
    page = panel(admin_client(admin_user), ready)
    assert "override-form" in page and "despite the probe's findings" in page

    finalized = finalize(version=ready, by=admin_user, override_reason="Leakage is the set's.")

    assert finalized.finalize_override == "Leakage is the set's."
    probe = finalized.finalize_evidence["probe"]
    assert probe["gate"] == "refuse" and probe["overridden"] is True
    assert finalized.finalize_evidence["override_reason"] == "Leakage is the set's."


def test_the_gate_lets_a_clean_probe_through(ready: Any, admin_user: Any) -> None:
    set_gate(ready, True)
    make_probe_run(ready, probe_summary([], leaked=3, dead=False))

    readiness = finalize_readiness(ready)

    assert readiness.ok and not readiness.warnings
    finalized = finalize(version=ready, by=admin_user, override_reason="not needed")
    assert finalized.finalize_override == ""  # nothing was overridden


def test_an_override_cannot_pass_another_missing_condition(
    version: Any, author: Any, admin_user: Any
) -> None:
    set_gate(version, True)
    job = good_job(version, author)
    job.stats = stats(300, 0.91)
    job.save(update_fields=["stats"])
    resolve_all(job)
    make_probe_run(version, probe_summary([], leaked=30))

    readiness = finalize_readiness(version)

    assert readiness.probe_refused and not readiness.overridable
    with pytest.raises(NotReady):
        finalize(version=version, by=admin_user, override_reason="please")


def test_the_panel_override_form_finalizes(ready: Any, admin_user: Any) -> None:
    set_gate(ready, True)
    make_probe_run(ready, probe_summary([], leaked=30))
    job = finalize_readiness(ready).job
    client = admin_client(admin_user)

    response = client.post(
        reverse("labeling:finalize", args=[ready.pk]),
        {"job": job.pk, "override_reason": "Checked the leaked items by hand."},
    )

    assert response.status_code == 302
    ready.refresh_from_db()
    assert ready.is_finalized and ready.finalize_evidence["probe"]["overridden"]
    page = client.get(ready.get_absolute_url()).content.decode()
    assert "despite the probe&#x27;s findings" in page or "despite the probe's findings" in page


# --- the bundle ------------------------------------------------------------------------------


def test_the_bundle_carries_the_probe_both_ways(ready: Any, admin_user: Any, author: Any) -> None:
    run = make_probe_run(ready, probe_summary([], leaked=30))
    finalize(version=ready, by=admin_user)
    data = exports.bundle(ready.policy)
    assert data["versions"][0]["finalize_evidence"]["probe"]["summary"] == run.summary

    data["policy"] |= {"name": "Harassment elsewhere", "slug": "harassment-elsewhere"}
    result = import_bundle(
        read_bundle(io.BytesIO(json.dumps(data).encode())), by=admin_user, source="studio two"
    )

    imported = Version.objects.get(policy=result.policy, number=ready.number)
    assert not imported.is_finalized
    assert imported.imported_evidence["probe"]["summary"] == run.summary
    client = admin_client(admin_user)
    page = client.get(imported.get_absolute_url()).content.decode()
    section = page[page.index('id="imported-probe"') :]
    assert "imported" in section[:200] and "93.0% of expected flips observed (40 of 43)" in section
    assert "15.2% (30 of 198)" in section and "1 dead clause" in section
    # Imported evidence is the source's word: this studio's probe of the version is still none.
    card = client.get(reverse("labeling:probe_card", args=[imported.pk]), **HTMX)
    assert 'id="probe-card-none"' in card.content.decode()


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        ("not an object", "must be an object with a “summary” object"),
        ({"summary": {"leakage": {"share": 7}}}, "“leakage.share” must be a number from 0 to 1"),
        ({"summary": {"steerability": []}}, "“steerability” must be an object"),
        ({"summary": {}, "warnings": [1]}, "“warnings” must be a list of text"),
    ],
)
def test_a_malformed_probe_in_a_bundle_is_refused(
    ready: Any, admin_user: Any, probe: Any, message: str
) -> None:
    finalize(version=ready, by=admin_user)
    data = exports.bundle(ready.policy)
    data["policy"] |= {"name": "Harassment elsewhere", "slug": "harassment-elsewhere"}
    data["versions"][0]["finalize_evidence"]["probe"] = probe

    with pytest.raises(BundleError) as refused:
        import_bundle(data, by=admin_user, source="studio two")

    assert message in str(refused.value)
    assert not Policy.objects.filter(slug="harassment-elsewhere").exists()


def test_the_bundle_keeps_the_probe_gate(ready: Any, admin_user: Any) -> None:
    data = exports.bundle(ready.policy)
    data["policy"] |= {"name": "Gated elsewhere", "slug": "gated-elsewhere", "probe_gate": True}

    result = import_bundle(data, by=admin_user, source="studio two")

    assert result.policy.probe_gate is True
    data["policy"] |= {"name": "Bad gate", "slug": "bad-gate", "probe_gate": "yes"}
    with pytest.raises(BundleError, match="“probe_gate” must be true/false"):
        import_bundle(data, by=admin_user, source="studio two")


def test_the_bundle_writes_the_probe_gate(ready: Any, admin_user: Any) -> None:
    set_gate(ready, True)
    data = exports.bundle(ready.policy)
    assert data["policy"]["probe_gate"] is True
    data["policy"] |= {"name": "Gated again", "slug": "gated-again"}

    assert import_bundle(data, by=admin_user, source="studio two").policy.probe_gate is True
