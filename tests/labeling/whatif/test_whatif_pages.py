"""The what-if pages: the edit form of a version's clause, the run's before -> after table and
changed items, "Make it a version", the version page's card and the job page's entry points;
who may do what, hostile item text rendered inert, and page queries that do not grow with the
items the summary names."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.agreement import compute_agreement
from labeling.models import (
    ExplainFinding,
    ExplainRun,
    ExplainStatus,
    FindingRole,
    PolicyEvaluation,
    RunKind,
)
from policies.models import Version
from tests.labeling.explain.conftest import make_finished_job

HTMX = {"HTTP_HX_REQUEST": "true"}
HOSTILE = '<script>alert("whatif")</script><img src=x onerror=alert(1)>'
CLAUSE = "label/HA1/includes/1"  # "- Insults aimed at a **Target**." (tests.conftest)
NEW_A = "- Insults or slurs aimed at a **Target**, quoted or not."


def whatif_summary(fixed: list[int], broken: list[int], other: list[int], **extra: Any) -> dict:
    """A what-if run's summary in the shape ``labeling.whatif.record`` writes it."""
    return {
        "items": 40,
        "scored": 40,
        "failed": 0,
        "backend": "embedding",
        "weak": True,
        "same_as_job": True,
        "affected": {
            "n": 8,
            "before": {"agreement": 0.25, "kappa": -0.1},
            "after": {"agreement": 0.875, "kappa": 0.7},
        },
        "whole": {
            "n": 40,
            "before": {"agreement": 0.8, "kappa": 0.55, "a1": 0.4, "b1": 0.3},
            "after": {"agreement": 0.95, "kappa": 0.89, "a1": 0.45, "b1": 0.43},
        },
        "gold": {
            "n": 30,
            "before": {
                "accuracy": 0.7,
                "precision": 0.6,
                "recall": 0.5,
                "f1": 0.5455,
                "recall_0": 0.8,
                "tp": 6,
                "fp": 4,
                "fn": 6,
                "tn": 14,
            },
            "after": {
                "accuracy": 0.8,
                "precision": 0.7,
                "recall": 0.75,
                "f1": 0.7241,
                "recall_0": 0.7778,
                "tp": 9,
                "fp": 4,
                "fn": 3,
                "tn": 14,
            },
        },  # fmt: skip
        "changed": {
            "fixed": [{"item": i, "before": 0, "after": 1, "gold": "1"} for i in fixed],
            "broken": [{"item": i, "before": 0, "after": 1, "gold": "0"} for i in broken],
            "other": [{"item": i, "before": 1, "after": 0, "gold": None} for i in other],
            "fixed_count": len(fixed),
            "broken_count": len(broken),
            "other_count": len(other),
        },
        "drops": {"f1": -0.18, "recall_1": -0.25, "recall_0": 0.0222},
        "predicted": {"agreement": 0.95, "n": 40},
    } | extra


def make_whatif_run(version: Any, summary: dict[str, Any], **fields: Any) -> ExplainRun:
    """A what-if run as the engine leaves it when it has finished (status succeeded)."""
    defaults: dict[str, Any] = {
        "kind": RunKind.WHATIF,
        "version": version,
        "attempt": ExplainRun.objects.filter(version=version).count() + 1,
        "status": ExplainStatus.SUCCEEDED,
        "clause_key": CLAUSE,
        "edit_a": NEW_A,
        "summary": summary,
        "items_total": 40,
        "items_done": 40,
        "variants": 3,
        "scores": 120,
        "backend": "embedding",
        "weak_backend": True,
        "finished_at": timezone.now(),
    }
    return ExplainRun.objects.create(**(defaults | fields))


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def job(author: Any) -> Any:
    """A finished job over items, one of them hostile, with mismatches: the deciding job of
    its version (the policy's evaluation set, the minimum sample met)."""
    rows = [
        (HOSTILE, 1, 0),
        ("you are an insult, Sam", 1, 1),
        ("lovely weather", 0, 0),
        ("borderline remark", 1, 0),
    ]
    job = make_finished_job(author, rows)
    policy = job.version.policy
    policy.min_sample_size = 1
    policy.save(update_fields=["min_sample_size"])
    job.stats = compute_agreement([(a, b) for _, a, b in rows]).to_dict()
    job.save(update_fields=["stats"])
    PolicyEvaluation.objects.create(policy=policy, sample_set=job.sample_set, chosen_by=author)
    return job


@pytest.fixture
def version(job: Any) -> Any:
    return job.version


@pytest.fixture
def items(job: Any) -> list[int]:
    return list(job.sample_set.items.order_by("row_number").values_list("pk", flat=True))


# --- the form ---------------------------------------------------------------------------------


def test_form_shows_the_clause_in_both_wordings_and_starts_from_its_words(
    author: Any, version: Any, job: Any
) -> None:
    url = reverse("labeling:whatif", args=[version.pk])

    page = client_for(author).get(url, {"clause": CLAUSE}).content.decode()

    a = page[page.index('id="whatif-wording-a"') :]
    assert a[: a.index("</pre>")].endswith("- Insults aimed at a **Target**.")
    b = page[page.index('id="whatif-wording-b"') :]
    assert b[: b.index("</pre>")].endswith("- Name-calling directed at a **Target**.")
    assert "Includes of (HA1), criterion 1" in page
    # The textarea holds A's clause to edit, and the clause is chosen in the form.
    assert "- Insults aimed at a **Target**.</textarea>" in page
    assert f'value="{CLAUSE}" selected' in page
    job_url = reverse("labeling:job_detail", args=[job.pk])
    assert f'id="whatif-job">Scored on the items of <a href="{job_url}">' in page
    assert 'id="whatif-no-job"' not in page


def test_form_without_a_clause_offers_the_picker(author: Any, version: Any) -> None:
    page = client_for(author).get(reverse("labeling:whatif", args=[version.pk])).content.decode()

    assert 'id="whatif-picker"' in page and 'id="whatif-submit"' not in page
    assert f'<option value="{CLAUSE}">' in page and '<option value="overview">' in page


def test_a_refused_edit_is_shown_in_the_form_with_the_words_kept(
    author: Any, version: Any, explain_sent: list[dict[str, Any]]
) -> None:
    url = reverse("labeling:whatif", args=[version.pk])
    # Two clauses in one edit: the engine refuses, the author keeps what they typed.
    two = "- Insults aimed at a **Target**.\n- Mockery of a **Target**'s looks <b>now</b>."

    response = client_for(author).post(url, {"clause_key": CLAUSE, "edit_a": two, "edit_b": ""})

    page = response.content.decode()
    assert response.status_code == 200 and 'id="whatif-errors"' in page
    assert "Nothing was started." in page
    assert "Mockery of a **Target**&#x27;s looks &lt;b&gt;now&lt;/b&gt;.</textarea>" in page
    assert not ExplainRun.objects.filter(kind=RunKind.WHATIF).exists() and not explain_sent


def test_without_a_deciding_job_the_form_says_why(author: Any, version: Any) -> None:
    version.policy.min_sample_size = 1000  # the job no longer speaks for the version
    version.policy.save(update_fields=["min_sample_size"])
    url = reverse("labeling:whatif", args=[version.pk])
    client = client_for(author)

    assert 'id="whatif-no-job"' in client.get(url, {"clause": CLAUSE}).content.decode()
    page = client.post(url, {"clause_key": CLAUSE, "edit_a": NEW_A}).content.decode()
    assert "no deciding job" in page and f"{NEW_A}</textarea>" in page
    assert not ExplainRun.objects.filter(kind=RunKind.WHATIF).exists()


def test_an_empty_edit_or_an_unknown_clause_is_a_form_error(author: Any, version: Any) -> None:
    url = reverse("labeling:whatif", args=[version.pk])
    client = client_for(author)

    empty = client.post(url, {"clause_key": CLAUSE, "edit_a": "  \n"}).content.decode()
    unknown = client.post(url, {"clause_key": "label/ZZ/includes/9", "edit_a": NEW_A})

    assert "Write the clause&#x27;s new wording." in empty
    assert "Select a valid choice" in unknown.content.decode()
    assert not ExplainRun.objects.filter(kind=RunKind.WHATIF).exists()


def test_author_starts_a_whatif_and_lands_on_its_page(
    author: Any, version: Any, job: Any, explain_sent: list[dict[str, Any]]
) -> None:
    url = reverse("labeling:whatif", args=[version.pk])
    client = client_for(author)

    response = client.post(url, {"clause_key": CLAUSE, "edit_a": NEW_A, "edit_b": ""})

    run = ExplainRun.objects.get(kind=RunKind.WHATIF)
    assert response.status_code == 302
    assert response["Location"] == reverse("labeling:whatif_run", args=[run.pk])
    assert (run.version, run.job, run.clause_key, run.edit_a) == (version, job, CLAUSE, NEW_A)
    assert run.requested_by == author and run.items_total == 4
    page = client.get(response["Location"]).content.decode()
    assert 'id="whatif-bar"' in page and 'hx-trigger="every 1s"' in page


def test_htmx_start_redirects_htmx(
    author: Any, version: Any, job: Any, explain_sent: list[dict[str, Any]]
) -> None:
    response = client_for(author).post(
        reverse("labeling:whatif", args=[version.pk]),
        {"clause_key": CLAUSE, "edit_a": NEW_A},
        **HTMX,
    )
    run = ExplainRun.objects.get(kind=RunKind.WHATIF)
    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("labeling:whatif_run", args=[run.pk])


# --- the run's page ---------------------------------------------------------------------------


def test_run_page_shows_before_and_after_and_the_changed_items_inert(
    author: Any, version: Any, items: list[int]
) -> None:
    run = make_whatif_run(version, whatif_summary(items[:2], items[2:3], items[3:]))

    page = client_for(author).get(reverse("labeling:whatif_run", args=[run.pk])).content.decode()

    def row(key: str) -> str:
        start = page.index(f'data-figure="{key}"')
        return page[start : page.index("</tr>", start)]

    assert 'class="num before">25.0%' in row("affected") and 'after">87.5%' in row("affected")
    assert 'before">80.0%' in row("whole") and 'after">95.0%' in row("whole")
    assert 'before">0.550' in row("kappa") and 'after">0.890' in row("kappa")
    assert 'before">50.0%' in row("gold-recall") and 'after">75.0%' in row("gold-recall")
    assert 'before">80.0%' in row("gold-recall_0") and "down" in row("gold-recall_0")
    assert 'before">54.5%' in row("gold-f1") and 'after">72.4%' in row("gold-f1")
    assert "recall of class 1 (true positive rate) and recall of class 0" in page
    assert "<strong>95.0%</strong> agreement (40 items)" in page
    fixed = page[page.index('id="whatif-fixed"') : page.index('id="whatif-broken"')]
    assert f'data-item="{items[0]}"' in fixed and f'data-item="{items[1]}"' in fixed
    broken = page[page.index('id="whatif-broken"') : page.index('id="whatif-other"')]
    assert f'data-item="{items[2]}"' in broken and "(gold 0)" in broken
    assert f'data-item="{items[3]}"' in page[page.index('id="whatif-other"') :]
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;whatif&quot;)&lt;/script&gt;" in fixed
    assert 'id="whatif-not-same"' not in page
    assert "these scores come from the embedding baseline" in page
    assert 'id="whatif-make"' in page  # an author may make it a version


def test_a_rescoring_that_differs_from_the_job_says_so(
    author: Any, version: Any, items: list[int]
) -> None:
    run = make_whatif_run(version, whatif_summary([], [], [], same_as_job=False))

    page = client_for(author).get(reverse("labeling:whatif_run", args=[run.pk])).content.decode()

    assert 'id="whatif-not-same"' in page and "not the job's" in page


def test_htmx_poll_gets_the_section_and_stops_when_finished(
    author: Any, version: Any, items: list[int]
) -> None:
    run = make_whatif_run(
        version,
        {"affected_items": items[:1]},
        status=ExplainStatus.RUNNING,
        items_done=12,
        finished_at=None,
    )
    url = reverse("labeling:whatif_run", args=[run.pk])
    client = client_for(author)

    running = client.get(url, **HTMX).content.decode()

    assert running.lstrip().startswith('<section class="card whatif-run" id="whatif-run"')
    assert "<html" not in running and 'hx-trigger="every 1s"' in running
    assert 'id="whatif-cancel"' in running and 'value="12"' in running
    assert 'id="whatif-results"' not in running and 'id="whatif-make"' not in running

    ExplainRun.objects.filter(pk=run.pk).update(
        status=ExplainStatus.SUCCEEDED,
        summary=whatif_summary(items[:1], [], []),
        finished_at=timezone.now(),
    )
    done = client.get(url, **HTMX).content.decode()
    assert "hx-trigger" not in done and 'id="whatif-results"' in done


@pytest.mark.parametrize(
    ("status", "marker", "table"),
    [
        (ExplainStatus.FAILED, "The what-if run failed: No worker answered.", False),
        (ExplainStatus.CANCELLED, "there is no before → after table", False),
        (ExplainStatus.PARTIAL, "Partial: 30 of 40 items were scored", True),
    ],
)
def test_outcomes_are_named(
    author: Any, version: Any, items: list[int], status: str, marker: str, table: bool
) -> None:
    summary = whatif_summary(items[:1], [], []) if table else {"affected_items": []}
    run = make_whatif_run(version, summary, status=status, items_done=30, error="")
    if status == ExplainStatus.FAILED:
        ExplainRun.objects.filter(pk=run.pk).update(error="No worker answered.")

    page = client_for(author).get(reverse("labeling:whatif_run", args=[run.pk])).content.decode()

    assert marker in page
    assert ('id="whatif-results"' in page) is table


def test_author_cancels_the_running_whatif(author: Any, version: Any) -> None:
    run = make_whatif_run(version, {}, status=ExplainStatus.RUNNING, finished_at=None)

    response = client_for(author).post(
        reverse("labeling:whatif_cancel", args=[run.pk]), {"action": "cancel"}
    )

    run.refresh_from_db()
    assert response.status_code == 302 and run.status == ExplainStatus.CANCELLED


def test_run_page_queries_do_not_grow_with_the_items_named(
    author: Any, version: Any, items: list[int], django_assert_max_num_queries: Any
) -> None:
    client = client_for(author)
    run = make_whatif_run(version, whatif_summary(items[:1], [], []))
    url = reverse("labeling:whatif_run", args=[run.pk])
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    many = whatif_summary(items * 50, items * 50, items * 50)
    ExplainRun.objects.filter(pk=run.pk).update(summary=many)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url)
    assert response.status_code == 200


# --- making a version -------------------------------------------------------------------------


def test_make_it_a_version_leads_to_the_draft_which_links_the_evidence(
    author: Any, version: Any, job: Any, items: list[int], explain_sent: list[dict[str, Any]]
) -> None:
    client = client_for(author)
    client.post(
        reverse("labeling:whatif", args=[version.pk]), {"clause_key": CLAUSE, "edit_a": NEW_A}
    )
    run = ExplainRun.objects.get(kind=RunKind.WHATIF)
    ExplainRun.objects.filter(pk=run.pk).update(
        status=ExplainStatus.SUCCEEDED, summary=whatif_summary(items[:1], [], [])
    )

    response = client.post(
        reverse("labeling:whatif_make_version", args=[run.pk]), {"change_note": "Cover slurs."}
    )

    made = Version.objects.get(parent=version)
    assert response.status_code == 302 and response["Location"] == made.get_absolute_url()
    assert NEW_A in made.text and made.change_note.startswith("Cover slurs.")
    card = client.get(reverse("labeling:whatif_card", args=[made.pk]), **HTMX).content.decode()
    evidence = reverse("labeling:whatif_run", args=[run.pk])
    assert 'id="whatif-made-from"' in card and f'href="{evidence}"' in card
    page = client.get(evidence).content.decode()
    assert f'href="{made.get_absolute_url()}" id="whatif-made-link"' in page
    assert 'id="whatif-make"' not in page
    # A second click makes nothing more, and says why.
    again = client.post(
        reverse("labeling:whatif_make_version", args=[run.pk]), {"change_note": "x"}
    )
    assert Version.objects.filter(parent=version).count() == 1
    assert 'id="whatif-make-errors"' in again.content.decode()
    assert "already made a version" in again.content.decode()


def test_a_refused_note_comes_back_with_the_reason_and_the_words_kept(
    author: Any, version: Any, items: list[int]
) -> None:
    run = make_whatif_run(version, whatif_summary(items[:1], [], []))
    note = "<b>Cover</b> slurs " + "x" * 2100

    response = client_for(author).post(
        reverse("labeling:whatif_make_version", args=[run.pk]), {"change_note": note}
    )

    page = response.content.decode()
    assert response.status_code == 200 and 'id="whatif-make-errors"' in page
    assert 'value="&lt;b&gt;Cover&lt;/b&gt; slurs xxx' in page
    assert not Version.objects.filter(parent=version).exists()


def test_version_page_loads_the_whatif_card_with_the_runs_newest_first(
    author: Any, version: Any, items: list[int]
) -> None:
    client = client_for(author)
    page = client.get(version.get_absolute_url()).content.decode()
    assert f'hx-get="{reverse("labeling:whatif_card", args=[version.pk])}"' in page
    older = make_whatif_run(version, whatif_summary([], [], []))
    newer = make_whatif_run(version, {}, status=ExplainStatus.RUNNING, finished_at=None)

    card = client.get(reverse("labeling:whatif_card", args=[version.pk]), **HTMX).content.decode()

    assert card.lstrip().startswith('<section class="card whatif-card"')
    assert card.index(f'data-run="{newer.pk}"') < card.index(f'data-run="{older.pk}"')
    assert 'id="whatif-picker"' in card and f'<option value="{CLAUSE}">' in card
    assert 'id="whatif-made-from"' not in card
    history = client.get(reverse("labeling:whatif", args=[version.pk])).content.decode()
    assert history.index(f'data-run="{newer.pk}"') < history.index(f'data-run="{older.pk}"')


def test_job_page_offers_a_whatif_on_each_of_as_clauses(
    author: Any, version: Any, job: Any, items: list[int]
) -> None:
    run = ExplainRun.objects.create(
        job=job, attempt=1, status=ExplainStatus.SUCCEEDED, items_total=2, items_done=2
    )
    ExplainFinding.objects.bulk_create(
        [
            ExplainFinding(
                job=job, item_id=items[0], run=run, side=side, role=role, clause=CLAUSE, effect=1
            )
            for side, role in (("A", FindingRole.DECIDES), ("B", FindingRole.NECESSARY))
        ]
    )

    page = client_for(author).get(reverse("labeling:job_detail", args=[job.pk])).content.decode()

    link = f"{reverse('labeling:whatif', args=[version.pk])}?clause=label/HA1/includes/1"
    assert page.count(f'href="{link}" class="whatif-link"') == 1  # side A's row only


# --- permissions ------------------------------------------------------------------------------


def test_reviewers_may_look_but_not_start_cancel_or_make(
    reviewer: Any, version: Any, items: list[int]
) -> None:
    client = client_for(reviewer)
    running = make_whatif_run(version, {}, status=ExplainStatus.RUNNING, finished_at=None)
    done = make_whatif_run(version, whatif_summary(items[:1], [], []))

    form = client.get(reverse("labeling:whatif", args=[version.pk]), {"clause": CLAUSE})
    assert form.status_code == 200 and 'id="whatif-submit"' not in form.content.decode()
    page = client.get(reverse("labeling:whatif_run", args=[done.pk])).content.decode()
    assert 'id="whatif-make"' not in page
    running_page = client.get(reverse("labeling:whatif_run", args=[running.pk])).content.decode()
    assert 'id="whatif-cancel"' not in running_page
    post = {"clause_key": CLAUSE, "edit_a": NEW_A}
    assert client.post(reverse("labeling:whatif", args=[version.pk]), post).status_code == 403
    cancel = reverse("labeling:whatif_cancel", args=[running.pk])
    assert client.post(cancel, {"action": "cancel"}).status_code == 403
    make = reverse("labeling:whatif_make_version", args=[done.pk])
    assert client.post(make, {"change_note": ""}).status_code == 403
    running.refresh_from_db()
    assert running.status == ExplainStatus.RUNNING
    assert ExplainRun.objects.filter(kind=RunKind.WHATIF).count() == 2
    assert not Version.objects.filter(parent=version).exists()


def test_outsiders_see_nothing(outsider: Any, version: Any) -> None:
    run = make_whatif_run(version, whatif_summary([], [], []))
    client = client_for(outsider)
    for url in (
        reverse("labeling:whatif", args=[version.pk]),
        reverse("labeling:whatif_card", args=[version.pk]),
        reverse("labeling:whatif_run", args=[run.pk]),
    ):
        assert client.get(url).status_code == 403


def test_a_run_of_another_kind_is_not_a_whatif_page(author: Any, version: Any) -> None:
    probe = make_whatif_run(version, {}, kind=RunKind.PROBE)
    url = reverse("labeling:whatif_run", args=[probe.pk])
    assert client_for(author).get(url).status_code == 404


def test_a_cancel_without_its_button_is_refused(author: Any, version: Any) -> None:
    run = make_whatif_run(version, {}, status=ExplainStatus.RUNNING, finished_at=None)
    url = reverse("labeling:whatif_cancel", args=[run.pk])
    assert client_for(author).post(url, {"action": "delete"}).status_code == 400
