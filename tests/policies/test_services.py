from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from policies import services
from policies.models import TwinJob, TwinJobStatus, TwinOrigin, Version
from tests.conftest import TWIN_TEXT as TWIN
from tests.policies.conftest import make_deciding_job, make_job, make_policy, make_version


def test_versions_are_numbered_in_order_with_parent(policy, author, policy_text, twin_text):
    v1 = make_version(policy, author, policy_text)
    v2 = make_version(policy, author, policy_text + "\nMore.", parent=v1, change_note="More")
    v3 = make_version(policy, author, policy_text, parent=v1, change_note="Back to v1")
    assert [v1.number, v2.number, v3.number] == [1, 2, 3]
    assert v2.parent == v1 and v3.parent == v1
    assert v2.author == author and v2.change_note == "More"


def test_version_numbers_are_per_policy(author, policy_text):
    a, b = make_policy(author, "A"), make_policy(author, "B")
    make_version(a, author, policy_text)
    assert make_version(b, author, policy_text).number == 1


def test_change_note_required_from_version_two(policy, author, policy_text):
    make_version(policy, author, policy_text)
    with pytest.raises(services.PolicyError, match="change note"):
        make_version(policy, author, policy_text, change_note="  ")
    assert policy.versions.count() == 1


def test_duplicate_version_number_is_refused_by_the_database(version):
    with pytest.raises(IntegrityError), transaction.atomic():
        Version.objects.create(
            policy=version.policy, number=version.number, text="x", author=version.author
        )


def test_oversized_text_is_refused(policy, author):
    with pytest.raises(services.PolicyError, match="limit is 200,000"):
        make_version(policy, author, "x" * (services.MAX_POLICY_CHARS + 1))


def test_twin_failing_the_structural_check_is_refused(policy, author, policy_text):
    with pytest.raises(services.TwinRejected) as exc:
        make_version(policy, author, policy_text, twin_text=policy_text)
    assert any("identical" in m for m in exc.value.messages)
    assert not policy.versions.exists()


def test_text_never_changes_when_the_twin_is_updated(version, author, twin_text):
    original = version.text
    new_twin = twin_text.replace("Name-calling", "Insulting words")
    updated = services.update_twin(version=version, twin_text=new_twin, by=author)
    assert updated.text == original
    assert updated.twin_text == new_twin
    assert updated.twin_origin == TwinOrigin.HAND
    assert updated.twin_updated_at is not None


def test_update_twin_saves_a_structurally_different_twin_with_warnings(version, author, twin_text):
    broken = twin_text.replace("- Statements threatening to hurt a **Target**.\n", "")
    updated = services.update_twin(version=version, twin_text=broken, by=author)
    assert updated.twin_text == broken
    assert updated.twin_warnings == [
        "Label HA1: 2 Includes criteria in the primary text, 1 in the twin."
    ]


@pytest.mark.parametrize("copy", ["", "   \n", "{text}", "  {upper}\n\n"])
def test_update_twin_refuses_an_empty_twin_or_a_copy_and_keeps_the_old_one(
    version, author, twin_text, copy
):
    copy = copy.format(text=version.text, upper=version.text.upper().replace("\n", "\n  "))
    with pytest.raises(services.TwinRejected) as exc:
        services.update_twin(version=version, twin_text=copy, by=author)
    assert "empty" in exc.value.messages[0] or "identical" in exc.value.messages[0]
    version.refresh_from_db()
    assert version.twin_text == twin_text


def test_create_version_saves_twin_warnings(policy, author, policy_text, twin_text):
    other_code = twin_text.replace("(HA1)", "(HX1)")
    version = make_version(policy, author, policy_text, twin_text=other_code)
    assert version.twin_warnings == [
        "Label codes differ (missing from the twin: HA1; only in the twin: HX1)."
    ]
    assert make_version(policy, author, policy_text, twin_text=twin_text).twin_warnings == []


def test_twin_closeness_measures_changed_words_against_the_floor(settings, policy_text):
    settings.COPE_TWIN_MIN_CHANGED_WORDS = 0.20
    near = services.twin_closeness(policy_text, policy_text.replace("abuse", "abuse,"))
    assert near is not None and near.nearly_copy and 0 < near.changed_share < 0.2
    far = services.twin_closeness(policy_text, TWIN)
    assert far is not None and not far.nearly_copy and far.changed_share >= 0.2
    settings.COPE_TWIN_MIN_CHANGED_WORDS = 0.99
    assert services.twin_closeness(policy_text, TWIN).nearly_copy  # the floor is the setting
    assert services.twin_closeness(policy_text, "") is None


def test_twin_is_locked_once_the_version_has_jobs(version, author, twin_text, settings):
    settings.COPE_TWIN_BACKEND = "openai"
    make_job(version, author)
    with pytest.raises(services.TwinLocked, match="create a new version"):
        services.update_twin(version=version, twin_text=twin_text + "\n", by=author)
    with pytest.raises(services.TwinLocked):
        services.request_twin(version=version, by=author)


def test_unchanged_twin_copied_to_a_new_version_keeps_its_origin(version, author, twin_text):
    Version.objects.filter(pk=version.pk).update(
        twin_origin=TwinOrigin.MODEL, twin_model="m", twin_similarity={"word_overlap": 0.4}
    )
    version.refresh_from_db()
    v2 = make_version(
        version.policy, author, version.text + "\n", twin_text=twin_text, parent=version
    )
    assert (v2.twin_origin, v2.twin_model) == (TwinOrigin.MODEL, "m")
    v3 = make_version(
        version.policy, author, version.text, twin_text=twin_text + "\n", parent=version
    )
    assert (v3.twin_origin, v3.twin_model) == (TwinOrigin.HAND, "")


def test_finalize_is_conditional(version, admin_user):
    finalized = services.finalize_version(version=version, by=admin_user)
    assert finalized.finalized_at is not None and finalized.finalized_by == admin_user
    first = finalized.finalized_at
    with pytest.raises(services.AlreadyFinalized):
        services.finalize_version(version=version, by=admin_user)
    version.refresh_from_db()
    assert version.finalized_at == first


def test_request_twin_needs_a_backend(version, author, settings):
    settings.COPE_TWIN_BACKEND = "none"
    with pytest.raises(services.TwinBackendMissing, match="COPE_TWIN_BACKEND"):
        services.request_twin(version=version, by=author)
    assert not TwinJob.objects.exists()


def test_request_twin_sends_the_task_on_commit(
    version, author, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from cope_studio.celery import app

    settings.COPE_TWIN_BACKEND = "openai"
    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: sent.append((name, kw)))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        twinjob = services.request_twin(version=version, by=author)
    assert sent == []  # nothing leaves before the row is committed
    for callback in callbacks:
        callback()
    assert twinjob.status == TwinJobStatus.QUEUED
    assert sent == [
        (
            "worker.generate_twin",
            {
                "args": [{"request_id": twinjob.pk, "policy": version.text, "contract": 1}],
                "queue": "gpu",
            },
        )
    ]


def test_summary_status_and_agreement(author, admin_user, policy_text, twin_text):
    draft = make_policy(author, "Draft")
    make_version(draft, author, policy_text)
    reviewing = make_policy(author, "Reviewing")
    v1 = make_version(reviewing, author, policy_text, twin_text)
    make_deciding_job(v1, author, stats={"p_o": 0.9, "kappa": 0.7})
    done = make_policy(author, "Done")
    services.finalize_version(version=make_version(done, author, policy_text), by=admin_user)
    empty = make_policy(author, "Empty")
    rows = {row.policy.name: row for row in services.summarize_policies()}
    assert rows["Draft"].status == "draft" and rows["Draft"].figure is None
    assert rows["Reviewing"].status == "in review"
    figure = rows["Reviewing"].figure
    assert figure is not None and figure.version_number == 1
    assert figure.stats == {"p_o": 0.9, "kappa": 0.7, "n": reviewing.min_sample_size}
    assert rows["Done"].status == "finalized"
    assert rows["Empty"].latest is None and rows["Empty"].status == "draft"
    assert services.policy_status(reviewing) == "in review"
    assert services.policy_status(empty) == "draft"
    # A newer version without jobs is a draft again; the latest agreement is still shown.
    make_version(reviewing, author, policy_text + "\n", parent=v1)
    row = next(r for r in services.summarize_policies() if r.policy.name == "Reviewing")
    assert row.status == "draft" and row.figure is not None and row.figure.version_number == 1


def test_slug_is_set_from_the_name_and_suffixed_on_a_clash(author):
    first = make_policy(author, "Hate speech — strict")
    second = make_policy(author, "Hate speech: strict")
    assert first.slug == "hate-speech-strict"
    assert second.slug == "hate-speech-strict-2"
    assert make_policy(author, "!!!").slug == "policy"


def test_slug_never_changes_when_the_policy_is_renamed(author):
    policy = make_policy(author, "Spam")
    policy.name = "Spam and scams"
    policy.save()
    policy.refresh_from_db()
    assert policy.slug == "spam"
