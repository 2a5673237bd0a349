from __future__ import annotations

from policies.models import TwinJob, TwinJobStatus, TwinOrigin
from policies.tasks import record_twin
from tests.policies.conftest import make_job
from worker.contract import TwinResult


def _twinjob(version, user):
    return TwinJob.objects.create(version=version, requested_by=user)


def _result(twinjob, text, **kw):
    return TwinResult(
        request_id=twinjob.pk,
        text=text,
        model=kw.pop("model", "tiny-chat"),
        prompt=kw.pop("prompt", "twin-v1"),
        similarity=kw.pop("similarity", {"word_overlap": 0.41}),
        **kw,
    ).to_dict()


def test_success_fills_the_twin(policy, author, policy_text, twin_text):
    from tests.policies.conftest import make_version

    version = make_version(policy, author, policy_text)
    twinjob = _twinjob(version, author)
    record_twin(_result(twinjob, twin_text))
    twinjob.refresh_from_db()
    version.refresh_from_db()
    assert twinjob.status == TwinJobStatus.SUCCEEDED and twinjob.finished_at
    assert twinjob.result_text == twin_text and twinjob.similarity == {"word_overlap": 0.41}
    assert version.twin_text == twin_text
    assert version.twin_origin == TwinOrigin.MODEL
    assert (version.twin_model, version.twin_prompt) == ("tiny-chat", "twin-v1")
    assert version.twin_similarity == {"word_overlap": 0.41}


def test_redelivered_result_changes_nothing(version, author, twin_text):
    twinjob = _twinjob(version, author)
    other = twin_text.replace("Name-calling", "Abusive names")
    record_twin(_result(twinjob, other))
    twinjob.refresh_from_db()
    finished = twinjob.finished_at
    # A second, different delivery of the same request: ignored.
    record_twin(_result(twinjob, "", error="late failure", model="", prompt=""))
    twinjob.refresh_from_db()
    version.refresh_from_db()
    assert twinjob.status == TwinJobStatus.SUCCEEDED and twinjob.finished_at == finished
    assert version.twin_text == other


def test_rejected_and_failed_results_leave_the_version_alone(version, author, twin_text):
    rejected, failed = _twinjob(version, author), _twinjob(version, author)
    record_twin(_result(rejected, "", error="The generated twin was rejected: Label codes differ."))
    record_twin(_result(failed, "", error="No twin generator is configured.", model="", prompt=""))
    rejected.refresh_from_db()
    failed.refresh_from_db()
    version.refresh_from_db()
    assert rejected.status == TwinJobStatus.REJECTED and "Label codes differ" in rejected.error
    assert failed.status == TwinJobStatus.FAILED and "No twin generator" in failed.error
    assert version.twin_text == twin_text and version.twin_origin == TwinOrigin.HAND


def test_a_twin_that_fails_the_check_here_is_rejected(version, author):
    twinjob = _twinjob(version, author)
    record_twin(_result(twinjob, version.text))  # identical to the primary text
    twinjob.refresh_from_db()
    assert twinjob.status == TwinJobStatus.REJECTED and "identical" in twinjob.error
    assert twinjob.result_text == ""


def test_success_after_jobs_started_does_not_touch_the_twin(version, author, twin_text):
    twinjob = _twinjob(version, author)
    make_job(version, author)
    record_twin(_result(twinjob, twin_text.replace("Name-calling", "Slurs")))
    twinjob.refresh_from_db()
    version.refresh_from_db()
    assert twinjob.status == TwinJobStatus.SUCCEEDED and "Not applied" in twinjob.error
    assert version.twin_text == twin_text


def test_malformed_and_unknown_results_are_dropped(version, author):
    record_twin({"contract": 99, "request_id": 1})
    record_twin({"garbage": True})
    assert record_twin(_result(TwinJob(pk=987654, version=version), "x")) is None


def test_a_generated_twin_with_structural_differences_is_saved_with_warnings(
    policy, author, policy_text, twin_text
):
    from tests.policies.conftest import make_version

    version = make_version(policy, author, policy_text)
    twinjob = _twinjob(version, author)
    other = twin_text.replace("- Statements threatening to hurt a **Target**.\n", "")
    record_twin(_result(twinjob, other))
    twinjob.refresh_from_db()
    version.refresh_from_db()
    warning = "Label HA1: 2 Includes criteria in the primary text, 1 in the twin."
    assert twinjob.status == TwinJobStatus.SUCCEEDED and twinjob.warnings == [warning]
    assert version.twin_text == other and version.twin_warnings == [warning]


def test_a_generated_copy_of_the_text_is_rejected(policy, author, policy_text):
    from tests.policies.conftest import make_version

    version = make_version(policy, author, policy_text)
    twinjob = _twinjob(version, author)
    record_twin(_result(twinjob, policy_text.upper()))
    twinjob.refresh_from_db()
    version.refresh_from_db()
    assert twinjob.status == TwinJobStatus.REJECTED and "identical" in twinjob.error
    assert version.twin_text == ""
