"""The probe page, the version page's probe card, the settings' probe gate and the chart's
steerability: what a person sees of a version's probe, who may start one, and hostile item
text rendered inert."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.jobs.charts import ChartPoint, agreement_chart
from labeling.models import ExplainRun, ExplainStatus, PolicyEvaluation, RunKind
from policies import services as policy_services
from policies.models import PolicySettingChange, SettingPath
from tests.labeling.conftest import make_sample_set, make_version
from tests.policies.test_settings_audit import admin_form

HTMX = {"HTTP_HX_REQUEST": "true"}
HOSTILE = '<script>alert("probe")</script><img src=x onerror=alert(1)>'


def probe_summary(
    item_ids: list[int],
    *,
    leaked: int = 3,
    dead: bool = True,
    moved_items: list[int] | None = None,
) -> dict[str, Any]:
    """A probe run's summary in the shape ``labeling.probes`` writes it."""
    n = 198
    moved = moved_items if moved_items is not None else item_ids
    clauses = [
        {
            "key": "label/HA1/includes/1",
            "where": "Includes of (HA1), criterion 1",
            "text": "Insults aimed at a **Target**.",
            "moved": 12,
            "to_one": 2,
            "to_zero": 10,
            "status": "load_bearing",
            "items": moved,
        },
        {
            "key": "label/HA1/excludes/1",
            "where": "Excludes of (HA1), criterion 1",
            "text": "Criticism of ideas or public work.",
            "moved": 1,
            "to_one": 1,
            "to_zero": 0,
            "status": "minor",
            "items": moved[:1],
        },
    ]
    if dead:
        clauses.append(
            {
                "key": "term/1",
                "where": "Definition of Terms, term 1",
                "text": "**Target**: a specific, identifiable person.",
                "moved": 0,
                "to_one": 0,
                "to_zero": 0,
                "status": "dead",
                "items": [],
            }
        )
    return {
        "items": 200,
        "scored": n,
        "failed": 2,
        "positive": 57,
        "backend": "embedding",
        "weak": True,
        "leakage": {
            "count": leaked,
            "n": n,
            "share": leaked / n,
            "low": 0.005,
            "high": 0.043,
            "items": item_ids[:leaked],
        },
        "inversion": [
            {
                "label": "HA1",
                "expected": 43,
                "flipped": 40,
                "share": 40 / 43,
                "low": 0.81,
                "high": 0.98,
                "not_flipped": item_ids[:1],
            }
        ],
        "clauses": clauses,
        "dead": [c["key"] for c in clauses if c["status"] == "dead"],
        "load_bearing": ["label/HA1/includes/1"],
        "rewording": None,
        "carveouts": {"proposed": 0, "approved": 0, "rejected": 0, "scored": 0, "flipped": 0},
        "steerability": {
            "flips": {"observed": 40, "expected": 43, "share": 40 / 43, "low": 0.81, "high": 0.98},
            "stable": None,
        },
        "tags": [
            {
                "tag": "slur_h",
                "n": 20,
                "positive": 14,
                "leaked": 1,
                "expected_flips": 14,
                "flipped": 13,
            }
        ],
    }


def make_probe_run(version: Any, summary: dict[str, Any], **fields: Any) -> ExplainRun:
    """A probe run as the engine leaves it when it has finished (status succeeded)."""
    defaults: dict[str, Any] = {
        "kind": RunKind.PROBE,
        "version": version,
        "attempt": (ExplainRun.objects.filter(version=version).count() + 1),
        "status": ExplainStatus.SUCCEEDED,
        "summary": summary,
        "items_total": 200,
        "items_done": 198,
        "items_failed": 2,
        "variants": 12,
        "scores": 2376,
        "backend": "embedding",
        "weak_backend": True,
        "finished_at": timezone.now(),
    }
    return ExplainRun.objects.create(**(defaults | fields))


@pytest.fixture
def version(author: Any) -> Any:
    return make_version(author, name="Harassment probed")


@pytest.fixture
def items(author: Any, version: Any) -> list[int]:
    sample_set = make_sample_set(
        author, [HOSTILE, "you are an insult, Sam", "lovely weather", "borderline remark"]
    )
    PolicyEvaluation.objects.create(policy=version.policy, sample_set=sample_set)
    return list(sample_set.items.order_by("pk").values_list("pk", flat=True))


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- the probe page ---------------------------------------------------------------------------


def test_probe_page_shows_the_figures_with_item_text_inert(
    author: Any, version: Any, items: list[int]
) -> None:
    make_probe_run(version, probe_summary(items))

    page = client_for(author).get(reverse("labeling:probe", args=[version.pk])).content.decode()

    steer = page[page.index('id="probe-steerability"') :]
    assert "93.0%" in steer[:200] and "40 of 43" in steer[:400]
    leakage = page[page.index('id="probe-leakage"') :]
    assert "3 of 198" in leakage[:400] and "1.5%" in leakage[:200]
    dead = page[page.index('id="probe-dead"') : page.index('id="probe-load-bearing"')]
    assert 'data-clause="term/1"' in dead and "Definition of Terms, term 1" in dead
    assert "label/HA1/includes/1" not in dead
    bearing = page[page.index('id="probe-load-bearing"') :]
    assert 'data-clause="label/HA1/includes/1"' in bearing
    assert f'data-item="{items[1]}"' in bearing
    assert 'data-label="HA1"' in page and 'data-tag="slur_h"' in page
    # The hostile item is named by the leakage, the inversion and the clause: escaped each time.
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;probe&quot;)&lt;/script&gt;" in page
    assert "this probe ran on the embedding baseline" in page


def test_htmx_poll_gets_the_section_and_stops_when_finished(
    author: Any, version: Any, items: list[int]
) -> None:
    run = make_probe_run(version, {}, status=ExplainStatus.RUNNING, items_done=40, finished_at=None)
    url = reverse("labeling:probe", args=[version.pk])
    client = client_for(author)

    running = client.get(url, **HTMX).content.decode()

    assert running.lstrip().startswith('<section class="card probe" id="probe"')
    assert "<html" not in running and 'hx-trigger="every 1s"' in running
    assert 'id="probe-cancel"' in running and 'id="probe-start"' not in running
    assert 'value="40"' in running  # the progress bar

    ExplainRun.objects.filter(pk=run.pk).update(
        status=ExplainStatus.SUCCEEDED, summary=probe_summary(items), finished_at=timezone.now()
    )
    done = client.get(url, **HTMX).content.decode()
    assert "hx-trigger" not in done and 'id="probe-results"' in done


def test_a_failed_probe_says_so_and_keeps_the_last_figures(
    author: Any, version: Any, items: list[int]
) -> None:
    make_probe_run(version, probe_summary(items))
    make_probe_run(
        version, {}, status=ExplainStatus.FAILED, error="No worker answered for 10 minutes."
    )

    page = client_for(author).get(reverse("labeling:probe", args=[version.pk])).content.decode()

    assert "The probe failed: No worker answered for 10 minutes." in page
    assert 'id="probe-older"' in page and "from run 1" in page
    assert 'id="probe-flips-count">40 of 43' in page


def test_a_partial_probe_is_named_partial(author: Any, version: Any, items: list[int]) -> None:
    make_probe_run(version, probe_summary(items), status=ExplainStatus.PARTIAL)

    page = client_for(author).get(reverse("labeling:probe", args=[version.pk])).content.decode()

    assert 'id="probe-partial"' in page and "198 of 200 items were scored" in page
    assert 'id="probe-results"' in page


def test_without_an_llm_backend_the_page_says_what_did_not_run(
    author: Any, version: Any, items: list[int], settings: Any
) -> None:
    settings.COPE_TWIN_BACKEND = "none"
    make_probe_run(version, probe_summary(items))

    page = client_for(author).get(reverse("labeling:probe", args=[version.pk])).content.decode()

    assert 'id="probe-llm-missing"' in page
    assert "need an LLM backend (<code>COPE_TWIN_BACKEND</code>)" in page
    assert "ran the rest" in page


def test_page_queries_do_not_grow_with_the_items_named(
    author: Any, version: Any, items: list[int], django_assert_max_num_queries: Any
) -> None:
    client = client_for(author)
    url = reverse("labeling:probe", args=[version.pk])
    run = make_probe_run(version, probe_summary(items[:1], leaked=1))
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    ExplainRun.objects.filter(pk=run.pk).update(summary=probe_summary(items * 12, leaked=3))
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url)
    assert response.status_code == 200


# --- starting and cancelling ------------------------------------------------------------------


def test_author_starts_a_probe_with_the_button(
    author: Any, version: Any, items: list[int], explain_sent: list[dict[str, Any]]
) -> None:
    client = client_for(author)
    url = reverse("labeling:probe", args=[version.pk])

    response = client.post(url, {"action": "start"})

    assert response.status_code == 302 and response["Location"] == url
    run = ExplainRun.objects.get(version=version, kind=RunKind.PROBE)
    assert run.requested_by == author and run.items_total == len(items)
    page = client.get(url).content.decode()
    assert "Probing" in page and 'id="probe-status"' in page


def test_htmx_start_redirects_htmx(
    author: Any, version: Any, items: list[int], explain_sent: list[dict[str, Any]]
) -> None:
    response = client_for(author).post(
        reverse("labeling:probe", args=[version.pk]), {"action": "start"}, **HTMX
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("labeling:probe", args=[version.pk])


def test_probe_without_an_evaluation_set_says_why_and_creates_nothing(
    author: Any, version: Any
) -> None:
    client = client_for(author)
    url = reverse("labeling:probe", args=[version.pk])

    page = client.post(url, {"action": "start"}, follow=True).content.decode()

    assert not ExplainRun.objects.filter(version=version).exists()
    assert 'class="msg error"' in page and "evaluation set" in page


def test_author_cancels_the_running_probe(author: Any, version: Any, items: list[int]) -> None:
    run = make_probe_run(version, {}, status=ExplainStatus.RUNNING, finished_at=None)

    client_for(author).post(reverse("labeling:probe", args=[version.pk]), {"action": "cancel"})

    run.refresh_from_db()
    assert run.status == ExplainStatus.CANCELLED


@pytest.mark.parametrize("action", ["start", "cancel"])
def test_reviewers_may_look_but_not_start_or_cancel(
    reviewer: Any, version: Any, items: list[int], action: str
) -> None:
    client = client_for(reviewer)
    url = reverse("labeling:probe", args=[version.pk])
    make_probe_run(version, probe_summary(items), status=ExplainStatus.RUNNING, finished_at=None)

    assert client.get(url).status_code == 200
    assert client.post(url, {"action": action}).status_code == 403
    assert ExplainRun.objects.filter(version=version).count() == 1
    assert ExplainRun.objects.get(version=version).status == ExplainStatus.RUNNING


def test_outsiders_see_nothing(outsider: Any, version: Any) -> None:
    client = client_for(outsider)
    assert client.get(reverse("labeling:probe", args=[version.pk])).status_code == 403
    assert client.get(reverse("labeling:probe_card", args=[version.pk])).status_code == 403


def test_a_post_without_its_button_is_refused(author: Any, version: Any) -> None:
    url = reverse("labeling:probe", args=[version.pk])
    assert client_for(author).post(url, {"action": "delete"}).status_code == 400


# --- the version page's card ------------------------------------------------------------------


def test_version_page_loads_the_probe_card(author: Any, version: Any, items: list[int]) -> None:
    client = client_for(author)
    page = client.get(version.get_absolute_url()).content.decode()
    assert f'hx-get="{reverse("labeling:probe_card", args=[version.pk])}"' in page

    none = client.get(reverse("labeling:probe_card", args=[version.pk]), **HTMX).content.decode()
    assert 'id="probe-card-none"' in none and 'id="probe-link"' in none

    make_probe_run(version, probe_summary(items))
    card = client.get(reverse("labeling:probe_card", args=[version.pk]), **HTMX).content.decode()
    score = card[card.index('id="probe-card-score"') :]
    assert "<strong>93.0%</strong>" in score and "40 of 43" in score
    assert 'class="issues probe-warnings"' in card  # the dead clause is a warning on the card


# --- the settings' probe gate -----------------------------------------------------------------


def test_the_settings_service_audits_the_probe_gate(admin_user: Any, version: Any) -> None:
    policy = version.policy
    changes = policy_services.update_policy_settings(
        policy=policy,
        agreement_threshold=policy.agreement_threshold,
        min_sample_size=policy.min_sample_size,
        probe_gate=True,
        by=admin_user,
    )

    assert changes == {"probe_gate": (False, True)}
    row = PolicySettingChange.objects.get(policy=policy)
    assert (row.field, row.old_value, row.new_value) == ("probe_gate", "warn", "refuse")
    assert row.changed_by == admin_user and row.via == SettingPath.SETTINGS


def test_the_admin_audits_the_probe_gate(admin_user: Any, version: Any) -> None:
    policy = version.policy
    data = admin_form(policy, probe_gate="on")

    response = client_for(admin_user).post(
        reverse("admin:policies_policy_change", args=[policy.pk]), data
    )

    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.probe_gate
    row = PolicySettingChange.objects.get(policy=policy)
    assert (row.field, row.old_value, row.new_value) == ("probe_gate", "warn", "refuse")
    assert row.changed_by == admin_user and row.via == SettingPath.ADMIN


# --- the chart --------------------------------------------------------------------------------


def test_chart_draws_steerability_beside_agreement() -> None:
    points = [
        ChartPoint(1, 0.9, 0.7, 250, steerability=0.6, steer_n=40),
        ChartPoint(2, 0.96, 0.8, 250, steerability=0.93, steer_n=43),
        ChartPoint(3, None, None, 0, steerability=0.97, steer_n=45),  # probed, no job yet
    ]

    svg = str(agreement_chart(points, 0.95))

    assert 'class="series-steerability"' in svg and "steerability (flips)" in svg
    assert "v3 expected flips observed: 97.0% (n=45)" in svg
    assert svg.count('class="point-agreement"') == 2
    plain = str(agreement_chart([ChartPoint(1, 0.9, 0.7, 250)], 0.95))
    assert "steerability" not in plain


def test_the_settings_page_audits_the_probe_gate(admin_user: Any, version: Any) -> None:
    policy = version.policy
    client = client_for(admin_user)
    url = reverse("labeling:policy_settings", args=[policy.pk])
    form = {
        "agreement_threshold": "95",
        "min_kappa": "0.60",
        "min_sample_size": str(policy.min_sample_size),
        "probe_gate": "refuse",
    }

    response = client.post(url, form)

    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.probe_gate
    row = PolicySettingChange.objects.get(policy=policy)
    assert (row.field, row.old_value, row.new_value) == ("probe_gate", "warn", "refuse")
    assert row.changed_by == admin_user and row.via == SettingPath.SETTINGS
    page = client.get(url).content.decode()
    assert 'id="current-probe-gate">refuse<' in page
    assert "probe findings at finalize</td><td>warn</td><td>refuse" in page
    client.post(url, form | {"probe_gate": ""})  # a form without it keeps the gate
    policy.refresh_from_db()
    assert policy.probe_gate and PolicySettingChange.objects.filter(policy=policy).count() == 1


def test_the_policy_chart_shows_each_versions_steerability(
    author: Any, version: Any, items: list[int]
) -> None:
    make_probe_run(version, probe_summary(items))

    page = client_for(author).get(
        reverse("labeling:policy_panel", args=[version.policy_id]), **HTMX
    )

    assert f"v{version.number} expected flips observed: 93.0% (n=43)" in page.content.decode()
