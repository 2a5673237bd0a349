"""Correcting decisions: undo from the queue (`z`), the edit page, and what follows a correction
(the decision's history, gold and its history, the figures, the notes; never a finalized
version's evidence)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from labeling.gold.services import job_gold_report, set_gold
from labeling.models import (
    Decision,
    DecisionAction,
    DecisionChange,
    GoldChange,
    GoldLabel,
    GoldSource,
    ReviewStatus,
    ReviewTask,
)
from labeling.release.exports import job_evidence
from labeling.review.claim import ReviewError, claim_next_task
from labeling.review.corrections import edit_decision, undo_last_decision
from labeling.review.decisions import submit_decision
from labeling.review.notes import review_notes
from policies import services as policy_services
from policies.models import Version
from tests.labeling.review.test_review import make_job, tasks_of

HTMX = {"HTTP_HX_REQUEST": "true"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def decide(reviewer: Any, label: str = "1", **kw: Any) -> Decision:
    task = claim_next_task(reviewer=reviewer)
    assert task is not None
    return submit_decision(task=task, reviewer=reviewer, label=label, wording="a", **kw)


def gold_of(task: ReviewTask) -> tuple[str, str] | None:
    row = GoldLabel.objects.filter(policy_id=task.policy_id, item_id=task.item_id).first()
    return (row.label, row.source) if row else None


def gold_history(task: ReviewTask) -> list[tuple[str, str, str, str]]:
    return [
        (c.old_label, c.old_source, c.new_label, c.new_source)
        for c in GoldChange.objects.filter(item_id=task.item_id).order_by("id")
    ]


@pytest.fixture
def job(author: Any) -> Any:
    return make_job(
        author=author,
        mismatches=[(1, 0.9, 0.1), (0, 0.3, 0.7), (1, 0.6, 0.4)],
        texts=["first content", "second content", "third content"],
    )


# --- a decision's gold history ---------------------------------------------------------------


def test_a_decision_records_its_gold_change(reviewer: Any, job: Any) -> None:
    first = tasks_of(job)[0]
    decision = decide(reviewer, "u")
    assert gold_history(first) == [("", "", "u", GoldSource.REVIEW)]
    assert GoldChange.objects.get().decision_id == decision.pk


# --- undo ------------------------------------------------------------------------------------


def test_z_undoes_the_last_decision_back_to_its_card_claimed(reviewer: Any, job: Any) -> None:
    first, second, _third = tasks_of(job)
    client = client_for(reviewer)
    client.get(reverse("labeling:queue"), {"start": "1"})
    saved = client.post(
        reverse("labeling:review_submit", args=[first.pk]),
        {"label": "0", "wording": "b", "quote": "the clause", "note": "my slip"},
        **HTMX,
    )
    assert f'data-task-id="{second.pk}"' in saved.content.decode()
    assert 'id="undo-form"' in saved.content.decode()

    response = client.post(reverse("labeling:review_undo"), **HTMX)

    html = response.content.decode()
    assert f'data-task-id="{first.pk}"' in html and "was undone" in html
    assert re.search(r'name="label" value="0"[^>]*checked', html)
    assert re.search(r'name="wording" value="b"[^>]*checked', html)
    assert "my slip" in html and 'value="the clause"' in html  # filled in to correct
    assert not Decision.objects.filter(task=first).exists()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == ReviewStatus.CLAIMED and first.claimed_by == reviewer
    assert first.resolved_at is None
    assert second.status == ReviewStatus.OPEN and second.claimed_by is None  # one claim
    change = DecisionChange.objects.get(task=first)
    assert change.action == DecisionAction.UNDO and change.changed_by == reviewer
    assert change.before == {
        "label": "0",
        "wording": "b",
        "quote": "the clause",
        "note": "my slip",
        "reviewer": reviewer.pk,
    }
    assert change.after == {}
    assert gold_of(first) is None  # no gold before the decision: none again
    assert gold_history(first) == [("", "", "0", "review"), ("0", "review", "", "")]


def test_undo_gives_back_the_typed_gold_the_decision_replaced(
    author: Any, reviewer: Any, job: Any
) -> None:
    first = tasks_of(job)[0]
    set_gold(policy=job.version.policy, item=first.item, label="0", source="typed", by=author)
    decide(reviewer, "1")
    assert gold_of(first) == ("1", "review")

    undo_last_decision(reviewer=reviewer)

    assert gold_of(first) == ("0", "typed")
    row = GoldLabel.objects.get(item=first.item)
    assert row.decided_by == author and row.decision_id is None
    assert gold_history(first)[-1] == ("1", "review", "0", "typed")


def test_undo_falls_back_to_the_imported_label(reviewer: Any, job: Any) -> None:
    first = tasks_of(job)[0]
    first.item.expected_label = 0
    first.item.save()
    decide(reviewer, "1")

    undo_last_decision(reviewer=reviewer)

    assert gold_of(first) is None
    assert gold_history(first) == [("0", "import", "1", "review"), ("1", "review", "0", "import")]
    report = job_gold_report(job)
    assert report.sides["A"].score.n == 1  # the import's label is the gold again


def test_undo_keeps_a_newer_gold(author: Any, reviewer: Any, job: Any) -> None:
    first = tasks_of(job)[0]
    decide(reviewer, "1")
    set_gold(policy=job.version.policy, item=first.item, label="0", source="typed", by=author)

    undo_last_decision(reviewer=reviewer)

    assert gold_of(first) == ("0", "typed")


def test_undo_steps_back_one_decision_at_a_time(reviewer: Any, job: Any) -> None:
    first, second, _third = tasks_of(job)
    decide(reviewer)
    decide(reviewer)
    assert undo_last_decision(reviewer=reviewer).task.pk == second.pk
    assert undo_last_decision(reviewer=reviewer).task.pk == first.pk
    assert list(ReviewTask.objects.filter(claimed_by=reviewer).values_list("pk", flat=True)) == [
        first.pk
    ]
    with pytest.raises(ReviewError, match="no decision to undo"):
        undo_last_decision(reviewer=reviewer)


def test_undo_never_touches_another_reviewers_decision(
    reviewer: Any, second_reviewer: Any, job: Any
) -> None:
    decide(second_reviewer)
    response = client_for(reviewer).post(reverse("labeling:review_undo"), **HTMX)
    assert "You have no decision to undo." in response.content.decode()
    assert Decision.objects.count() == 1


def test_plain_undo_redirects_to_the_card(reviewer: Any, job: Any) -> None:
    first = tasks_of(job)[0]
    decide(reviewer)
    client = client_for(reviewer)
    response = client.post(reverse("labeling:review_undo"))
    assert response.status_code == 302 and response["Location"].endswith(f"?job={job.pk}")
    assert f'data-task-id="{first.pk}"' in client.get(response["Location"]).content.decode()


# --- edit ------------------------------------------------------------------------------------


def test_editing_a_decision_keeps_the_change_and_moves_gold_figures_and_notes(
    reviewer: Any, job: Any
) -> None:
    first = tasks_of(job)[0]
    decision = decide(reviewer, "1", quote="old clause", note="old note")
    before = job_gold_report(job).sides["A"].score
    url = reverse("labeling:decision_edit", args=[decision.pk])
    client = client_for(reviewer)
    assert "old note" in client.get(url).content.decode()

    response = client.post(
        url, {"label": "0", "wording": "b", "quote": "  new   clause ", "note": "new note "}
    )

    assert response.status_code == 302
    decision.refresh_from_db()
    assert (decision.label, decision.wording, decision.quote, decision.note) == (
        "0",
        "b",
        "new clause",
        "new note",
    )
    assert decision.updated_at is not None
    change = DecisionChange.objects.get(task=first)
    assert change.action == DecisionAction.EDIT
    assert change.before["label"] == "1" and change.before["note"] == "old note"
    assert change.after["label"] == "0" and change.after["quote"] == "new clause"
    assert gold_of(first) == ("0", "review")
    assert gold_history(first)[-1] == ("1", "review", "0", "review")
    assert GoldChange.objects.order_by("id").last().changed_by == reviewer  # type: ignore[union-attr]
    after = job_gold_report(job).sides["A"].score
    assert (before.tp, after.tp, after.fp) == (1, 0, 1)  # A said 1: right before, wrong now
    notes = review_notes(job)
    assert [g.quote for g in notes.groups] == ["new clause"]
    page = client.get(reverse("labeling:review_notes", args=[job.pk])).content.decode()
    assert ">edited<" in page and url in page
    assert "new note" in client.get(url).content.decode()


def test_an_edit_that_changes_nothing_records_nothing(reviewer: Any, job: Any) -> None:
    decision = decide(reviewer, "1")
    assert (
        edit_decision(decision=decision, by=reviewer, label="1", wording="a", quote="", note="")
        is None
    )
    assert not DecisionChange.objects.exists()


def test_an_edit_leaves_a_newer_gold_alone(author: Any, reviewer: Any, job: Any) -> None:
    first = tasks_of(job)[0]
    decision = decide(reviewer, "1")
    set_gold(policy=job.version.policy, item=first.item, label="u", source="typed", by=author)
    edit_decision(decision=decision, by=reviewer, label="0", wording="a")
    assert gold_of(first) == ("u", "typed")


def test_only_the_decisions_reviewer_or_an_admin_may_edit(
    reviewer: Any, second_reviewer: Any, author: Any, job: Any
) -> None:
    decision = decide(reviewer, "1")
    url = reverse("labeling:decision_edit", args=[decision.pk])
    post = {"label": "0", "wording": "a"}
    for outsider in (second_reviewer, author):
        assert client_for(outsider).get(url).status_code == 403
        assert client_for(outsider).post(url, post).status_code == 403
    decision.refresh_from_db()
    assert decision.label == "1"
    # Whoever may change any decision (the admin role) may edit it.
    second_reviewer.user_permissions.add(Permission.objects.get(codename="change_decision"))
    assert client_for(second_reviewer).post(url, post).status_code == 302
    decision.refresh_from_db()
    assert decision.label == "0"
    assert DecisionChange.objects.get().changed_by == second_reviewer


def test_the_admin_role_may_correct_any_reviewers_decision(
    reviewer: Any, admin_user: Any, job: Any
) -> None:
    decision = decide(reviewer, "1")
    url = reverse("labeling:decision_edit", args=[decision.pk])
    assert not admin_user.is_superuser  # the role's permission, not a superuser's pass
    assert client_for(admin_user).post(url, {"label": "0", "wording": "a"}).status_code == 302
    decision.refresh_from_db()
    assert decision.label == "0"


def test_hostile_text_on_the_edit_page_is_inert(reviewer: Any, author: Any) -> None:
    make_job(author=author, mismatches=[(1, 0.9, 0.1)], texts=["<script>alert(1)</script>"])
    decision = decide(reviewer, "1", note="<img src=x onerror=alert(2)>")
    html = client_for(reviewer).get(reverse("labeling:decision_edit", args=[decision.pk]))
    body = html.content.decode()
    assert "<script>alert(1)" not in body and "<img src=x" not in body


def test_an_edit_after_finalize_leaves_the_evidence_byte_identical(
    reviewer: Any, admin_user: Any, job: Any
) -> None:
    decision = decide(reviewer, "1")
    version = job.version
    policy_services.finalize_version(version=version, by=admin_user, evidence=job_evidence(job))
    frozen = json.dumps(Version.objects.get(pk=version.pk).finalize_evidence, sort_keys=True)

    edit_decision(decision=decision, by=reviewer, label="0", wording="b", note="after finalize")
    undo_last_decision(reviewer=reviewer)

    assert json.dumps(Version.objects.get(pk=version.pk).finalize_evidence, sort_keys=True) == (
        frozen
    )
    assert json.dumps(job_evidence(job), sort_keys=True) != frozen  # the live figures moved


def test_my_decisions_lists_mine_with_edit_links(
    reviewer: Any, second_reviewer: Any, job: Any
) -> None:
    mine = decide(reviewer, "1")
    theirs = decide(second_reviewer, "0")
    url = reverse("labeling:decision_list")

    html = client_for(reviewer).get(url).content.decode()
    assert reverse("labeling:decision_edit", args=[mine.pk]) in html
    assert reverse("labeling:decision_edit", args=[theirs.pk]) not in html
    second_reviewer.user_permissions.add(Permission.objects.get(codename="change_decision"))
    everyone = client_for(second_reviewer).get(url).content.decode()
    assert reverse("labeling:decision_edit", args=[mine.pk]) in everyone
    assert reviewer.username in everyone
