"""Archive and restore of policies and sample sets, and the records that cannot be deleted.

A sample set a finalized version rests on (a job of a finalized version ran on it, or it is a
policy's evaluation set) and a policy with a finalized version are never deleted: every path
is tried here (the model's ``delete``, a queryset's, a version's or a job's delete from the
shell, Django admin's delete page and its bulk action, the API). There is no delete button on
the studio's own pages; the test of the pages checks none is offered.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import ProtectedError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.api import keys as api_keys
from labeling.jobs.forms import JobStartForm, PolicySettingsForm
from labeling.models import Job, PolicyEvaluation, SampleSet
from policies.models import Policy, Version, allow_record_deletion
from tests.labeling.conftest import make_sample_set, make_version

pytestmark = pytest.mark.django_db


def _finalize(version: Version, user: User) -> None:
    Version.objects.filter(pk=version.pk).update(finalized_at=timezone.now(), finalized_by=user)


def _job(version: Version, sample_set: SampleSet, user: User) -> Job:
    return Job.objects.create(
        version=version, sample_set=sample_set, text_a=version.text, text_b="", created_by=user
    )


@pytest.fixture
def superuser(db: Any) -> User:
    return User.objects.create_superuser(username="root", password="x")


@pytest.fixture
def record(author: User) -> tuple[Policy, SampleSet, Job]:
    """A policy whose v1 is finalized, and the set a job of v1 ran on."""
    version = make_version(author, name="Records")
    sample_set = make_sample_set(author, ["a", "b"], name="Used set")
    job = _job(version, sample_set, author)
    _finalize(version, author)
    return version.policy, sample_set, job


# Sample sets that cannot be deleted ---------------------------------------------------------


def test_the_shell_cannot_delete_a_set_a_finalized_version_ran_on(record: Any) -> None:
    _policy, sample_set, _job = record
    with pytest.raises(ProtectedError, match="a job of a finalized version ran on it"):
        sample_set.delete()
    with pytest.raises(ProtectedError, match="Archive it instead"):
        SampleSet.objects.filter(pk=sample_set.pk).delete()
    assert SampleSet.objects.filter(pk=sample_set.pk).exists()


def test_the_shell_cannot_delete_the_job_that_holds_the_set(record: Any) -> None:
    _policy, sample_set, job = record
    with pytest.raises(ProtectedError, match="its version is finalized"):
        job.delete()
    with pytest.raises(ProtectedError):
        Job.objects.filter(sample_set=sample_set).delete()
    assert Job.objects.filter(pk=job.pk).exists()


def test_an_evaluation_set_cannot_be_deleted(author: User) -> None:
    version = make_version(author, name="Evaluated")
    sample_set = make_sample_set(author, ["a"], name="Eval set")
    PolicyEvaluation.objects.create(policy=version.policy, sample_set=sample_set)
    with pytest.raises(ProtectedError, match="evaluation set of “Evaluated”"):
        sample_set.delete()
    with pytest.raises(ProtectedError, match="evaluation set"):
        SampleSet.objects.all().delete()


def test_a_set_only_drafts_ran_on_is_still_deletable_with_its_jobs(author: User) -> None:
    version = make_version(author, name="Drafty")
    sample_set = make_sample_set(author, ["a"], name="Scratch")
    job = _job(version, sample_set, author)
    job.delete()
    sample_set.delete()
    assert not SampleSet.objects.filter(pk=sample_set.pk).exists()


def test_django_admin_refuses_to_delete_the_set_single_and_bulk(
    record: Any, superuser: User
) -> None:
    _policy, sample_set, _job = record
    client = Client()
    client.force_login(superuser)
    url = reverse("admin:labeling_sampleset_delete", args=[sample_set.pk])
    page = client.post(url, {"post": "yes"})
    assert page.status_code == 200 and "a job of a finalized version ran on it" in page.text
    bulk = client.post(
        reverse("admin:labeling_sampleset_changelist"),
        {"action": "delete_selected", "_selected_action": [sample_set.pk], "post": "yes"},
    )
    assert bulk.status_code == 200 and "archive it instead" in bulk.text
    assert SampleSet.objects.filter(pk=sample_set.pk).exists()


def test_django_admin_refuses_to_delete_a_finalized_versions_job(
    record: Any, superuser: User
) -> None:
    _policy, _set, job = record
    client = Client()
    client.force_login(superuser)
    page = client.post(reverse("admin:labeling_job_delete", args=[job.pk]), {"post": "yes"})
    assert page.status_code == 200 and "its version is finalized" in page.text
    assert Job.objects.filter(pk=job.pk).exists()


def test_the_api_has_no_way_to_delete(client: Client, record: Any, author: User) -> None:
    policy, _set, _job = record
    secret = api_keys.create_key(owner=author, name="svc", scopes=["read"], by=author).secret
    response = client.delete(
        f"/api/v1/policies/{policy.slug}", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 405
    assert Policy.objects.filter(pk=policy.pk).exists()


# Policies that cannot be deleted -------------------------------------------------------------


def test_the_shell_cannot_delete_a_policy_with_a_finalized_version(author: User) -> None:
    version = make_version(author, name="Kept")  # no job: nothing else protects it
    _finalize(version, author)
    policy = version.policy
    with pytest.raises(ProtectedError, match="version 1 is finalized"):
        policy.delete()
    with pytest.raises(ProtectedError, match="Archive the policy instead"):
        Policy.objects.filter(pk=policy.pk).delete()
    with pytest.raises(ProtectedError, match="a finalized version is a record"):
        Version.objects.filter(pk=version.pk).delete()
    assert Version.objects.filter(pk=version.pk).exists()


def test_an_imported_finalized_version_keeps_its_policy_too(author: User) -> None:
    version = make_version(author, name="Imported")
    Version.objects.filter(pk=version.pk).update(imported_finalized_at=timezone.now())
    with pytest.raises(ProtectedError):
        version.policy.delete()


def test_a_draft_only_policy_is_still_deletable(author: User) -> None:
    version = make_version(author, name="Scratch policy")
    version.policy.delete()
    assert not Version.objects.filter(pk=version.pk).exists()


def test_django_admin_refuses_to_delete_the_policy_single_and_bulk(
    author: User, superuser: User
) -> None:
    version = make_version(author, name="Admin kept")
    _finalize(version, author)
    client = Client()
    client.force_login(superuser)
    url = reverse("admin:policies_policy_delete", args=[version.policy.pk])
    page = client.post(url, {"post": "yes"})
    assert page.status_code == 200 and "version 1 is finalized" in page.text
    bulk = client.post(
        reverse("admin:policies_policy_changelist"),
        {"action": "delete_selected", "_selected_action": [version.policy.pk], "post": "yes"},
    )
    assert bulk.status_code == 200 and "archive the policy instead" in bulk.text
    assert Policy.objects.filter(pk=version.policy.pk).exists()


def test_a_benchmark_may_remove_what_it_made(author: User) -> None:
    version = make_version(author, name="Bench")
    _finalize(version, author)
    with allow_record_deletion():
        version.policy.delete()
    assert not Policy.objects.filter(pk=version.policy.pk).exists()


# Archive and restore ------------------------------------------------------------------------


def test_an_author_archives_and_restores_a_policy(client: Client, author: User) -> None:
    policy = make_version(author, name="Old policy").policy
    client.force_login(author)
    detail = client.get(reverse("policies:detail", args=[policy.pk])).text
    assert reverse("policies:archive", args=[policy.pk]) in detail and ">Delete" not in detail
    response = client.post(reverse("policies:archive", args=[policy.pk]), {"confirm": "1"})
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.archived_at is not None and policy.archived_by == author
    assert "<strong>Old policy</strong>" not in client.get(reverse("policies:list")).text
    archived = client.get(reverse("policies:list") + "?archived=1").text
    assert "<strong>Old policy</strong>" in archived
    detail = client.get(reverse("policies:detail", args=[policy.pk])).text
    assert "Archived" in detail and reverse("policies:restore", args=[policy.pk]) in detail
    client.post(reverse("policies:restore", args=[policy.pk]), {"confirm": "1"})
    policy.refresh_from_db()
    assert policy.archived_at is None
    assert "<strong>Old policy</strong>" in client.get(reverse("policies:list")).text


def test_a_reviewer_cannot_archive_and_a_bare_post_is_refused(
    client: Client, author: User, reviewer: User
) -> None:
    policy = make_version(author, name="Guarded").policy
    client.force_login(reviewer)
    assert (
        client.post(reverse("policies:archive", args=[policy.pk]), {"confirm": "1"}).status_code
        == 403
    )
    client.force_login(author)
    assert client.post(reverse("policies:archive", args=[policy.pk])).status_code == 400
    policy.refresh_from_db()
    assert policy.archived_at is None


def test_an_archived_policy_leaves_the_api_list_and_the_key_form(
    client: Client, author: User
) -> None:
    policy = make_version(author, name="Gone API").policy
    Policy.objects.filter(pk=policy.pk).update(archived_at=timezone.now())
    secret = api_keys.create_key(owner=author, name="svc", scopes=["read"], by=author).secret
    data = client.get("/api/v1/policies", HTTP_AUTHORIZATION=f"Bearer {secret}").json()
    assert data["items"] == []
    client.force_login(author)
    assert "Gone API" not in client.get(reverse("labeling:apikey_list")).text


def test_the_sets_creator_or_an_admin_archives_it_others_cannot(
    client: Client, author: User, admin_user: User, reviewer: User
) -> None:
    sample_set = make_sample_set(author, ["a"], name="Scratch set")
    archive = reverse("labeling:sampleset_archive", args=[sample_set.pk])
    restore = reverse("labeling:sampleset_restore", args=[sample_set.pk])
    client.force_login(reviewer)
    assert client.post(archive, {"confirm": "1"}).status_code == 403
    client.force_login(author)
    assert client.post(archive, {"confirm": "1"}).status_code == 302
    sample_set.refresh_from_db()
    assert sample_set.archived_at is not None
    row = f'{sample_set.pk}/">Scratch set</a>'
    assert row not in client.get(reverse("labeling:sampleset_list")).text
    assert row in client.get(reverse("labeling:sampleset_list") + "?archived=1").text
    client.force_login(admin_user)
    assert restore in client.get(reverse("labeling:sampleset_detail", args=[sample_set.pk])).text
    assert client.post(restore, {"confirm": "1"}).status_code == 302
    sample_set.refresh_from_db()
    assert sample_set.archived_at is None


def test_an_archived_set_leaves_the_job_and_evaluation_choices(author: User) -> None:
    kept = make_sample_set(author, ["a"], name="Kept set")
    gone = make_sample_set(author, ["b"], name="Gone set")
    SampleSet.objects.filter(pk=gone.pk).update(archived_at=timezone.now())
    start = JobStartForm().fields["sample_set"].queryset  # type: ignore[attr-defined]
    assert list(start) == [kept]
    assert not JobStartForm({"sample_set": gone.pk}).is_valid()
    settings_sets = PolicySettingsForm().fields["evaluation_set"].queryset  # type: ignore[attr-defined]
    assert list(settings_sets) == [kept]
    # The set chosen now stays valid (and shown) until changed.
    chosen = PolicySettingsForm(initial={"evaluation_set": gone})
    assert gone in chosen.fields["evaluation_set"].queryset  # type: ignore[attr-defined]
