"""Finalizing a version: what is missing, who may, and the panel that says so."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.agreement import Confusion, agreement_from_confusion
from labeling.models import Job, JobStatus, ReviewStatus, SampleSet
from labeling.release.finalize import NotReady, finalize, finalize_readiness
from labeling.review.claim import claim_next_task
from labeling.review.decisions import submit_decision
from tests.labeling.review.test_review import make_job, make_policy, make_version

HTMX = {"HTTP_HX_REQUEST": "true"}


def stats(n: int, p_o: float) -> dict[str, Any]:
    """Job stats exactly as a finished job stores them (Agreement.to_dict())."""
    agree = round(n * p_o)
    confusion = Confusion(a1b1=agree // 2, a1b0=n - agree, a0b1=0, a0b0=agree - agree // 2)
    return agreement_from_confusion(confusion).to_dict()


@pytest.fixture
def version(author: Any) -> Any:
    policy = make_policy(author, agreement_threshold=0.95, min_sample_size=200)
    return make_version(policy, author)


@pytest.fixture
def eval_set(author: Any) -> Any:
    return SampleSet.objects.create(name="Evaluation set", created_by=author)


@pytest.fixture(autouse=True)
def _one_sample_set(monkeypatch: pytest.MonkeyPatch, eval_set: Any) -> None:
    """Every job of these tests runs on the same set (the policy's evaluation set), unless a
    test passes another ``sample_set``."""
    import tests.labeling.review.test_review as factories

    original = factories.make_job

    def on_eval_set(**kw: Any) -> Any:
        kw.setdefault("sample_set", eval_set)
        return original(**kw)

    monkeypatch.setattr(sys.modules[__name__], "make_job", on_eval_set)


def good_job(version: Any, author: Any, **kw: Any) -> Any:
    """A finished job that meets every condition once its two mismatches are reviewed."""
    job = make_job(author=author, version=version, stats=stats(250, 248 / 250), **kw)
    return job


def resolve_all(job: Any) -> None:
    job.review_tasks.update(status=ReviewStatus.RESOLVED, resolved_at=timezone.now())


# --- readiness ------------------------------------------------------------------------------


def test_version_without_a_finished_job_is_not_ready(version: Any, author: Any) -> None:
    make_job(author=author, version=version, status=JobStatus.RUNNING)

    readiness = finalize_readiness(version)

    assert not readiness.ok
    assert readiness.missing[0].startswith("Version has no finished job yet: run a job")


def test_low_agreement_is_named(version: Any, author: Any) -> None:
    job = make_job(author=author, version=version, stats=stats(300, 0.91))
    resolve_all(job)

    readiness = finalize_readiness(version)

    assert readiness.missing == ["Agreement 91.0% is below the policy's threshold of 95%."]


def test_small_sample_is_named(version: Any, author: Any) -> None:
    job = make_job(author=author, version=version, stats=stats(120, 0.99))
    resolve_all(job)

    assert finalize_readiness(version).missing == [
        f"Job #{job.pk} labeled 120 items on both sides; finalize needs 200 (the policy's minimum "
        "sample): it cannot decide. Run it on a larger sample set, or an admin may lower the "
        "minimum sample in the settings."
    ]


def test_unreviewed_mismatches_are_named(version: Any, author: Any) -> None:
    job = good_job(version, author, mismatches=[(1, 0.9, 0.1)] * 3, texts=["a", "b", "c"])
    job.review_tasks.filter(pk=job.review_tasks.order_by("id").first().pk).update(
        status=ReviewStatus.RESOLVED
    )

    assert finalize_readiness(version).missing == [
        f"2 mismatches of job #{job.pk} are not reviewed yet."
    ]
    job.review_tasks.exclude(status=ReviewStatus.RESOLVED).first().delete()
    assert finalize_readiness(version).missing == [
        f"1 mismatch of job #{job.pk} is not reviewed yet."
    ]


def test_a_claimed_but_undecided_mismatch_is_not_reviewed(
    version: Any, author: Any, reviewer: Any, admin_user: Any
) -> None:
    """A reviewer holding a task has not decided it: the version stays unfinalizable, both in
    what the panel says and in ``finalize`` itself, until the decision is made."""
    job = good_job(version, author)  # two mismatches
    decided = claim_next_task(reviewer=reviewer, job=job)
    assert decided is not None
    submit_decision(task=decided, reviewer=reviewer, label="1", wording="a")
    held = claim_next_task(reviewer=reviewer, job=job)
    assert held is not None and held.status == ReviewStatus.CLAIMED

    assert finalize_readiness(version).missing == [
        f"1 mismatch of job #{job.pk} is not reviewed yet."
    ]
    with pytest.raises(NotReady) as caught:
        finalize(version=version, by=admin_user)
    assert caught.value.readiness.missing == [f"1 mismatch of job #{job.pk} is not reviewed yet."]
    version.refresh_from_db()
    job.refresh_from_db()
    assert not version.is_finalized and job.frozen_at is None

    submit_decision(task=held, reviewer=reviewer, label="0", wording="b")
    assert finalize(version=version, by=admin_user).is_finalized


def test_every_missing_condition_is_listed(version: Any, author: Any) -> None:
    job = make_job(author=author, version=version, stats=stats(210, 0.8))
    Job.objects.filter(pk=job.pk).update(backend="embedding")
    Version = type(version)
    Version.objects.filter(pk=version.pk).update(twin_text=version.text.replace("abuse", "abuse!"))
    version.refresh_from_db()

    missing = finalize_readiness(version).missing

    assert missing[0].startswith("The twin is nearly a copy of the text:")
    assert missing[1:3] == [
        "Agreement 80.0% is below the policy's threshold of 95%.",
        f"2 mismatches of job #{job.pk} are not reviewed yet.",
    ]
    assert missing[3].startswith(f"Job #{job.pk} was labeled by the CPU baseline (embedding)")
    assert len(missing) == 4


def test_ready_when_every_condition_holds(version: Any, author: Any) -> None:
    job = good_job(version, author)
    resolve_all(job)

    readiness = finalize_readiness(version)

    assert readiness.ok and readiness.missing == [] and readiness.job == job


def test_the_latest_finished_job_decides(version: Any, author: Any) -> None:
    old = good_job(version, author)
    resolve_all(old)
    newer = make_job(author=author, version=version, stats=stats(300, 0.5))
    resolve_all(newer)
    type(newer).objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=1))
    make_job(author=author, version=version, status=JobStatus.FAILED)
    make_job(author=author, version=version, status=JobStatus.RUNNING)

    readiness = finalize_readiness(version)

    assert readiness.job == newer
    assert readiness.missing[0] == "Agreement 50.0% is below the policy's threshold of 95%."
    assert readiness.missing[1].startswith("Cohen's kappa 0.200 is below the policy's minimum")


def test_a_job_on_another_set_or_below_the_minimum_never_decides(
    version: Any, author: Any, eval_set: Any
) -> None:
    resolve_all(good_job(version, author))  # fixes the evaluation set
    other = SampleSet.objects.create(name="Elsewhere", created_by=author)
    elsewhere = make_job(author=author, version=version, stats=stats(900, 0.5), sample_set=other)
    tiny = make_job(author=author, version=version, stats=stats(1, 0.0))
    resolve_all(elsewhere)
    resolve_all(tiny)

    readiness = finalize_readiness(version)

    assert readiness.ok and readiness.job not in (elsewhere, tiny)


def test_no_job_on_the_evaluation_set_is_named(version: Any, author: Any) -> None:
    other_version = make_version(version.policy, author)
    resolve_all(good_job(other_version, author))  # fixes the evaluation set
    elsewhere = SampleSet.objects.create(name="Elsewhere", created_by=author)
    job = make_job(author=author, version=version, stats=stats(900, 1.0), sample_set=elsewhere)

    assert finalize_readiness(version).missing == [
        f"Job #{job.pk} ran on “Elsewhere”, not on the evaluation set “Evaluation set”: only a "
        "job on the evaluation set can decide a finalize."
    ]


def test_threshold_comes_from_the_policy(author: Any) -> None:
    lenient = make_version(make_policy(author, agreement_threshold=0.9, min_sample_size=10), author)
    job = make_job(author=author, version=lenient, stats=stats(10, 0.9))
    resolve_all(job)

    assert finalize_readiness(lenient).ok


# --- finalize -------------------------------------------------------------------------------


def test_admin_finalizes_a_ready_version(version: Any, author: Any, admin_user: Any) -> None:
    resolve_all(good_job(version, author))

    finalized = finalize(version=version, by=admin_user)

    version.refresh_from_db()
    assert version.is_finalized and version.finalized_by == admin_user
    assert finalized.pk == version.pk
    assert finalize_readiness(version).missing == ["Version is already finalized."]


def test_finalize_refuses_a_version_that_is_not_ready(version: Any, admin_user: Any) -> None:
    with pytest.raises(NotReady) as caught:
        finalize(version=version, by=admin_user)

    assert caught.value.readiness.missing[0].startswith("Version has no finished job yet")
    version.refresh_from_db()
    assert not version.is_finalized


@pytest.mark.parametrize("persona", ["author", "reviewer"])
def test_only_admins_finalize(persona: str, request: Any, version: Any, author: Any) -> None:
    resolve_all(good_job(version, author))

    with pytest.raises(PermissionDenied):
        finalize(version=version, by=request.getfixturevalue(persona))

    version.refresh_from_db()
    assert not version.is_finalized


# --- views ----------------------------------------------------------------------------------


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_panel_says_plainly_what_is_missing(version: Any, author: Any) -> None:
    make_job(author=author, version=version, stats=stats(120, 0.9))
    url = reverse("labeling:finalize_panel", args=[version.pk])

    page = client_for(author).get(url)
    fragment = client_for(author).get(url, **HTMX)

    assert page.status_code == 200 and "<html" in page.content.decode()
    html = fragment.content.decode()
    assert "<html" not in html and f'id="finalize-panel-{version.pk}"' in html
    # Below the minimum sample the job does not decide: that is the condition named.
    assert "labeled 120 items on both sides; finalize needs 200 (the policy&#x27;s minimum" in html
    assert "Finalize " + str(version) + "</button>" not in html


def test_panel_offers_the_button_to_admins_only(version: Any, author: Any, admin_user: Any) -> None:
    resolve_all(good_job(version, author))
    url = reverse("labeling:finalize_panel", args=[version.pk])

    assert 'name="job"' in client_for(admin_user).get(url, **HTMX).content.decode()
    author_html = client_for(author).get(url, **HTMX).content.decode()
    assert 'name="job"' not in author_html and "An admin can finalize it." in author_html


def test_panel_is_closed_to_outsiders(version: Any, outsider: Any) -> None:
    url = reverse("labeling:finalize_panel", args=[version.pk])
    assert client_for(outsider).get(url).status_code == 403


def test_htmx_finalize_reloads_the_version_page(version: Any, author: Any, admin_user: Any) -> None:
    # The header badge and the export buttons change too, so htmx is told to load the page.
    job = good_job(version, author)
    resolve_all(job)

    client = client_for(admin_user)
    response = client.post(reverse("labeling:finalize", args=[version.pk]), {"job": job.pk}, **HTMX)

    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("policies:version", args=[version.pk])
    version.refresh_from_db()
    assert version.is_finalized
    page = client.get(response["HX-Redirect"]).content.decode()
    assert "is finalized; it can now be exported" in page
    assert reverse("labeling:version_export", args=[version.pk, "md"]) in page
    assert reverse("labeling:policy_export", args=[version.policy_id, "json"]) in page


def test_htmx_finalize_refused_returns_the_panel_with_the_reason(
    version: Any, author: Any, admin_user: Any
) -> None:
    good_job(version, author)  # two mismatches still open

    response = client_for(admin_user).post(
        reverse("labeling:finalize", args=[version.pk]),
        {"job": version.jobs.get().pk},
        **HTMX,
    )

    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert "Not finalized" in html
    version.refresh_from_db()
    assert not version.is_finalized


def test_plain_finalize_redirects_to_the_version(
    version: Any, author: Any, admin_user: Any
) -> None:
    job = good_job(version, author)
    resolve_all(job)

    response = client_for(admin_user).post(
        reverse("labeling:finalize", args=[version.pk]), {"job": job.pk}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("policies:version", args=[version.pk])
    version.refresh_from_db()
    assert version.is_finalized


def test_finalize_checked_against_another_job_is_refused(
    version: Any, author: Any, admin_user: Any
) -> None:
    old = good_job(version, author)
    resolve_all(old)
    newer = good_job(version, author, texts=["x", "y"])
    resolve_all(newer)

    response = client_for(admin_user).post(
        reverse("labeling:finalize", args=[version.pk]), {"job": old.pk}, **HTMX
    )

    assert f"Job #{newer.pk} decides now, not job #{old.pk}" in response.content.decode()
    version.refresh_from_db()
    assert not version.is_finalized


def test_finalize_view_shows_why_a_version_is_not_ready(
    version: Any, author: Any, admin_user: Any
) -> None:
    job = good_job(version, author)

    response = client_for(admin_user).post(
        reverse("labeling:finalize", args=[version.pk]), {"job": job.pk}, **HTMX
    )

    assert "2 mismatches of job" in response.content.decode()
    version.refresh_from_db()
    assert not version.is_finalized


@pytest.mark.parametrize("persona", ["author", "reviewer", "outsider"])
def test_finalize_view_is_admin_only(persona: str, request: Any, version: Any, author: Any) -> None:
    job = good_job(version, author)
    resolve_all(job)

    response = client_for(request.getfixturevalue(persona)).post(
        reverse("labeling:finalize", args=[version.pk]), {"job": job.pk}
    )

    assert response.status_code == 403
    version.refresh_from_db()
    assert not version.is_finalized
