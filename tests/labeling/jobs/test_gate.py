"""Finalize's gate: a minimum kappa beside the agreement threshold, AC1 shown beside kappa,
lowering the gate only with a confirmation, the settings written and typed one way, and job
pages that say when a job cannot decide."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.agreement import Confusion, agreement_from_confusion, cohen_kappa, gwet_ac1
from labeling.models import ReviewStatus, SampleSet
from labeling.release.exports import job_evidence
from labeling.release.finalize import NotReady, finalize, finalize_readiness
from policies.models import Policy, PolicySettingChange
from tests.labeling.review.test_review import make_job, make_policy, make_version

HTMX = {"HTTP_HX_REQUEST": "true"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def stats_of(a1b1: int, a1b0: int, a0b1: int, a0b0: int) -> dict[str, Any]:
    return agreement_from_confusion(Confusion(a1b1, a1b0, a0b1, a0b0)).to_dict()


# 250 items, 140 agree (56.0%), kappa 0.097: chance-level agreement between the wordings.
CHANCE = (18, 7, 103, 122)
# 250 items, 225 agree (90.0%), kappa 0.798.
GOOD = (100, 10, 15, 125)


def decided_job(version: Any, author: Any, counts: tuple[int, int, int, int], **kw: Any) -> Any:
    job = make_job(author=author, version=version, stats=stats_of(*counts), **kw)
    job.review_tasks.update(status=ReviewStatus.RESOLVED, resolved_at=timezone.now())
    return job


# --- Gwet's AC1 -----------------------------------------------------------------------------


def test_gwet_ac1_by_hand() -> None:
    # 100 items: A says 1 on 50, B on 45, 85 agree. π = (0.50 + 0.45) / 2 = 0.475;
    # p_e = 2 · 0.475 · 0.525 = 0.49875; AC1 = (0.85 − 0.49875) / (1 − 0.49875) = 0.700748…
    assert gwet_ac1(40, 10, 5, 45) == pytest.approx(0.35125 / 0.50125, abs=1e-12)
    assert gwet_ac1(40, 10, 5, 45) == pytest.approx(0.700748, abs=1e-6)
    assert gwet_ac1(0, 0, 0, 0) is None
    assert gwet_ac1(10, 0, 0, 0) == 1.0  # p_e = 0: AC1 is p_o, where kappa is undefined
    assert cohen_kappa(10, 0, 0, 0)[0] is None


def test_gwet_ac1_on_the_kappa_paradox() -> None:
    """Feinstein & Cicchetti's high-agreement paradox (J Clin Epidemiol 1990): 118 items both
    positive, 5 and 2 split, none both negative. p_o = 0.944 yet kappa is below zero; AC1 stays
    near p_o: π = (123/125 + 120/125) / 2 = 0.972, p_e = 2 · 0.972 · 0.028 = 0.054432,
    AC1 = (0.944 − 0.054432) / 0.945568 = 0.94078 (Gwet 2008, Br J Math Stat Psychol 61:29)."""
    kappa, _ = cohen_kappa(118, 5, 2, 0)
    assert kappa == pytest.approx(-0.0234, abs=1e-4)
    assert gwet_ac1(118, 5, 2, 0) == pytest.approx(0.889568 / 0.945568, abs=1e-9)
    assert gwet_ac1(118, 5, 2, 0) == pytest.approx(0.94078, abs=1e-5)


def test_job_stats_carry_ac1() -> None:
    assert stats_of(40, 10, 5, 45)["ac1"] == pytest.approx(0.700748, abs=1e-6)


# --- the kappa gate -------------------------------------------------------------------------


def test_chance_level_kappa_is_refused_even_above_the_threshold(
    author: Any, admin_user: Any
) -> None:
    policy = make_policy(author, agreement_threshold=0.55, min_sample_size=200)
    version = make_version(policy, author)
    job = decided_job(version, author, CHANCE)

    readiness = finalize_readiness(version)

    assert not readiness.ok and readiness.job == job
    assert readiness.missing == [
        "Cohen's kappa 0.097 is below the policy's minimum of 0.60 (Gwet's AC1 0.250): the two "
        "wordings agree little beyond what chance gives, whatever the percent agreement."
    ]
    assert readiness.figures is not None and readiness.figures.agreement_ok
    with pytest.raises(NotReady, match="Cohen's kappa 0.097 is below"):
        finalize(version=version, by=admin_user)
    version.refresh_from_db()
    assert not version.is_finalized


def test_undefined_kappa_is_refused(author: Any) -> None:
    policy = make_policy(author, agreement_threshold=0.9, min_sample_size=200)
    version = make_version(policy, author)
    decided_job(version, author, (0, 0, 0, 250))

    (line,) = finalize_readiness(version).missing
    assert line.startswith("Cohen's kappa of job #") and "undefined" in line


def test_the_minimum_kappa_comes_from_the_policy(author: Any, admin_user: Any) -> None:
    policy = make_policy(author, agreement_threshold=0.55, min_sample_size=200, min_kappa=0.05)
    version = make_version(policy, author)
    decided_job(version, author, CHANCE)

    assert finalize_readiness(version).ok
    finalized = finalize(version=version, by=admin_user)
    evidence = finalized.finalize_evidence
    assert evidence["agreement"]["kappa"] == pytest.approx(0.0969, abs=1e-4)
    assert evidence["agreement"]["ac1"] == pytest.approx(0.2498, abs=1e-4)
    assert evidence["gate"] == {
        "agreement_threshold": 0.55, "min_kappa": 0.05, "min_sample_size": 200,
    }  # fmt: skip


def test_evidence_computes_ac1_for_stats_stored_before_it(author: Any) -> None:
    version = make_version(make_policy(author, min_sample_size=200), author)
    stats = stats_of(*GOOD)
    del stats["ac1"]
    job = make_job(author=author, version=version, stats=stats)
    assert job_evidence(job)["agreement"]["ac1"] == pytest.approx(gwet_ac1(*GOOD))


def test_panel_shows_kappa_ac1_and_the_minimum(author: Any) -> None:
    policy = make_policy(author, agreement_threshold=0.55, min_sample_size=200)
    version = make_version(policy, author)
    decided_job(version, author, CHANCE)

    html = (
        client_for(author)
        .get(reverse("labeling:finalize_panel", args=[version.pk]), **HTMX)
        .content.decode()
    )

    table = html[html.index('id="gate-figures-') :]
    assert "56.0%" in table and "≥ 55%" in table
    assert "0.097" in table and "≥ 0.60" in table and "0.250" in table  # kappa, min, AC1
    assert "Gwet&#x27;s AC1" in table


# --- readiness and the job page before the minimum sample ----------------------------------


def test_readiness_names_the_largest_job_not_the_latest_scratch_run(author: Any) -> None:
    """No evaluation set yet (nothing reached the minimum sample): readiness talks about the
    100-item job just reviewed, not a 5-item test run that finished after it."""
    policy = make_policy(author, min_sample_size=200)
    version = make_version(policy, author)
    reviewed = make_job(author=author, version=version, stats={**stats_of(50, 2, 3, 45)})
    reviewed.review_tasks.update(status=ReviewStatus.RESOLVED)
    make_job(author=author, version=version, stats=stats_of(2, 0, 1, 2))  # the scratch run

    assert finalize_readiness(version).missing == [
        f"Job #{reviewed.pk} labeled 100 items on both sides; finalize needs 200 (the policy's "
        "minimum sample): it cannot decide. Run it on a larger sample set, or an admin may lower "
        "the minimum sample in the settings."
    ]


def test_job_page_says_a_job_below_the_minimum_sample_cannot_decide(author: Any) -> None:
    policy = make_policy(author, min_sample_size=200)
    small = make_job(
        author=author, version=make_version(policy, author), stats=stats_of(50, 2, 3, 45)
    )
    big = make_job(author=author, version=small.version, stats=stats_of(*GOOD))

    html = client_for(author).get(reverse("labeling:job_detail", args=[small.pk])).content
    assert (
        "This job labeled 100 items on both sides; finalize needs 200 (the policy&#x27;s "
        "minimum sample): it cannot decide."
    ) in html.decode()
    html = client_for(author).get(reverse("labeling:job_detail", args=[big.pk])).content
    assert 'id="below-minimum-sample"' not in html.decode()


def test_job_page_says_how_many_mismatches_were_carried_over(author: Any) -> None:
    version = make_version(make_policy(author), author)
    job = make_job(
        author=author,
        version=version,
        mismatches=[(1, 0.9, 0.1)] * 5,
        texts=[f"content {i}" for i in range(5)],
        stats=stats_of(0, 5, 0, 0),
    )
    ids = list(job.review_tasks.order_by("id").values_list("pk", flat=True))
    job.review_tasks.filter(pk__in=ids[:3]).update(status=ReviewStatus.RESOLVED, carried_over=True)
    job.review_tasks.filter(pk=ids[3]).update(status=ReviewStatus.RESOLVED)

    html = client_for(author).get(reverse("labeling:job_detail", args=[job.pk])).content.decode()
    summary = html[html.index('id="mismatch-summary"') :]
    summary = summary[: summary.index("</p>")]
    assert (
        "5</strong> mismatches: 3 carried over from earlier decisions on the same two texts, "
        "1 decided in this job, 1 still open."
    ) in summary


def test_threshold_is_written_one_way_on_every_page(author: Any, admin_user: Any) -> None:
    policy = make_policy(author, agreement_threshold=0.55, min_sample_size=200)
    version = make_version(policy, author)
    job = decided_job(version, author, GOOD)
    client = client_for(admin_user)
    pages = {
        "policy": reverse("policies:detail", args=[policy.pk]),
        "settings": reverse("labeling:policy_settings", args=[policy.pk]),
        "policy panel": reverse("labeling:policy_panel", args=[policy.pk]),
        "version panel": reverse("labeling:version_panel", args=[version.pk]),
        "job": reverse("labeling:job_detail", args=[job.pk]),
        "finalize": reverse("labeling:finalize_panel", args=[version.pk]),
    }
    for name, url in pages.items():
        html = client.get(url).content.decode()
        assert "55%" in html, name
        for other in ("0.55 ", "0.550", "55.0%", ">0.55<"):
            assert other not in html, (name, other)


# --- the settings page ----------------------------------------------------------------------


def settings_url(policy: Policy) -> str:
    return reverse("labeling:policy_settings", args=[policy.pk])


def test_settings_accept_the_threshold_as_a_share_or_a_percent(
    author: Any, admin_user: Any
) -> None:
    policy = make_policy(author, agreement_threshold=0.5)
    client = client_for(admin_user)

    share = client.post(
        settings_url(policy), {"agreement_threshold": "0.55", "min_sample_size": 200}
    )
    assert share.status_code == 302
    policy.refresh_from_db()
    assert policy.agreement_threshold == 0.55
    client.post(settings_url(policy), {"agreement_threshold": "57.5", "min_sample_size": 200})
    policy.refresh_from_db()
    assert policy.agreement_threshold == 0.575
    page = client.get(settings_url(policy)).content.decode()
    assert 'id="current-threshold">57.5%<' in page
    assert 'step="any"' in page and 'value="57.5"' in page  # the input shows what it accepts
    bad = client.post(settings_url(policy), {"agreement_threshold": "0.4", "min_sample_size": 200})
    assert bad.status_code == 400 and "greater than or equal to 50%" in bad.content.decode()


def test_lowering_the_gate_asks_for_a_confirmation_and_says_what_it_lets_through(
    author: Any, admin_user: Any
) -> None:
    policy = make_policy(author, agreement_threshold=0.95, min_sample_size=200)
    v1 = make_version(policy, author)
    job = decided_job(v1, author, GOOD)  # 90%, kappa 0.798: below 95%
    client = client_for(admin_user)
    data = {"agreement_threshold": "85", "min_sample_size": 200, "min_kappa": "0.60"}

    asked = client.post(settings_url(policy), data, **HTMX)

    html = asked.content.decode()
    assert asked.status_code == 200 and 'id="confirm-lowering"' in html
    assert "agreement threshold 95% → 85%" in html
    assert f"v1: agreement 90.0%, Cohen&#x27;s kappa 0.798 (job #{job.pk})" in html
    assert 'name="confirm"' in html and 'value="85"' in html  # the typed values are kept
    policy.refresh_from_db()
    assert policy.agreement_threshold == 0.95 and not PolicySettingChange.objects.exists()

    confirmed = client.post(settings_url(policy), {**data, "confirm": "on"})

    assert confirmed.status_code == 302
    policy.refresh_from_db()
    assert policy.agreement_threshold == 0.85
    change = PolicySettingChange.objects.get(policy=policy)
    assert (change.old_value, change.new_value, change.changed_by, change.via) == (
        "95%", "85%", admin_user, "settings",
    )  # fmt: skip


def test_lowering_the_minimum_kappa_asks_too_and_is_audited(author: Any, admin_user: Any) -> None:
    policy = make_policy(author, agreement_threshold=0.55, min_sample_size=200)
    version = make_version(policy, author)
    decided_job(version, author, CHANCE)
    client = client_for(admin_user)
    data = {"agreement_threshold": "55", "min_sample_size": 200, "min_kappa": "0.05"}

    html = client.post(settings_url(policy), data).content.decode()
    assert "minimum kappa 0.60 → 0.05" in html and "v1: agreement 56.0%" in html
    policy.refresh_from_db()
    assert policy.min_kappa == 0.6

    client.post(settings_url(policy), {**data, "confirm": "on"})
    policy.refresh_from_db()
    assert policy.min_kappa == 0.05
    page = client.get(settings_url(policy)).content.decode()
    audit = page[page.index('id="settings-audit"') :]
    assert "minimum kappa</td><td>0.60</td><td>0.05</td>" in audit
    assert "ana_admin" in audit and "Settings page" in audit


def test_loosening_the_probe_and_regression_gates_asks_too(author: Any, admin_user: Any) -> None:
    policy = make_policy(author)
    Policy.objects.filter(pk=policy.pk).update(probe_gate=True)
    client = client_for(admin_user)
    data = {
        "agreement_threshold": "95",
        "min_sample_size": 200,
        "min_kappa": "0.60",
        "probe_gate": "warn",
        "regression_tolerance": "5",
    }

    html = client.post(settings_url(policy), data).content.decode()

    assert 'id="confirm-lowering"' in html
    assert "probe findings at finalize refuse → warn" in html
    assert "regression tolerance 2% → 5%" in html
    policy.refresh_from_db()
    assert policy.probe_gate and policy.regression_tolerance == 0.02

    assert client.post(settings_url(policy), {**data, "confirm": "on"}).status_code == 302
    policy.refresh_from_db()
    assert not policy.probe_gate and policy.regression_tolerance == 0.05


def test_raising_the_gate_needs_no_confirmation(author: Any, admin_user: Any) -> None:
    policy = make_policy(author, agreement_threshold=0.9)
    response = client_for(admin_user).post(
        settings_url(policy),
        {"agreement_threshold": "95", "min_sample_size": 200, "min_kappa": "0.7"},
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.agreement_threshold, policy.min_kappa) == (0.95, 0.7)


def test_the_next_change_starts_from_an_admin_change(author: Any, admin_user: Any) -> None:
    policy = make_policy(author, agreement_threshold=0.55)
    policy.agreement_threshold = 0.5
    policy.save(changed_by=admin_user, via="admin")
    client_for(admin_user).post(
        settings_url(policy), {"agreement_threshold": "60", "min_sample_size": 200}
    )
    rows = list(PolicySettingChange.objects.filter(policy=policy).order_by("pk"))
    assert [(r.old_value, r.new_value) for r in rows] == [("55%", "50%"), ("50%", "60%")]


def test_an_evaluation_set_choice_is_still_audited(author: Any, admin_user: Any) -> None:
    policy = make_policy(author)
    chosen = SampleSet.objects.create(name="eval", item_count=10, created_by=author)
    client_for(admin_user).post(
        settings_url(policy),
        {"agreement_threshold": "95", "min_sample_size": 200, "evaluation_set": chosen.pk},
    )
    change = PolicySettingChange.objects.get(policy=policy)
    assert change.field == "evaluation_set" and change.new_value == f"eval (#{chosen.pk})"
    assert change.via == "settings" and change.changed_by == admin_user


def test_version_panel_names_the_job_below_the_minimum_sample(author: Any) -> None:
    policy = make_policy(author, min_sample_size=200)
    version = make_version(policy, author)
    reviewed = make_job(author=author, version=version, stats=stats_of(50, 2, 3, 45))
    make_job(author=author, version=version, stats=stats_of(2, 0, 1, 2))

    html = (
        client_for(author)
        .get(reverse("labeling:version_panel", args=[version.pk]), **HTMX)
        .content.decode()
    )
    note = html[html.index('id="version-too-small"') :]
    assert f"Job {reviewed.pk} labeled 100 items on both sides; finalize needs 200" in note
