"""Everything that writes policies, versions and twin jobs.

Versions are immutable: editing creates a new one. A twin may change only until the version has
labeling jobs. Twin generation is a ``TwinJob`` row plus a task sent by name to the GPU queue on
commit; the worker's answer comes back through ``record_twin_result``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Subquery
from django.utils import timezone

from cope_studio.celery import app as celery_app
from policies import hooks
from policies.diff import diff_stats
from policies.models import (
    Policy,
    SettingPath,
    TwinJob,
    TwinJobStatus,
    TwinOrigin,
    Version,
)
from worker.contract import GENERATE_TWIN_TASK, GPU_QUEUE, TwinRequest, TwinResult
from worker.policy_text import twin_problems, twin_warnings

log = logging.getLogger(__name__)

MAX_POLICY_CHARS = 200_000


class PolicyError(Exception):
    """A request the rules refuse; ``messages`` are shown to the user as they are."""

    def __init__(self, *messages: str) -> None:
        super().__init__(" ".join(messages))
        self.messages = list(messages)


class TwinRejected(PolicyError):
    """The twin is empty or a copy of the text; ``messages`` say which."""


class TwinLocked(PolicyError):
    """The version has labeling jobs: its twin can no longer change."""


class AlreadyFinalized(PolicyError):
    pass


class TwinBackendMissing(PolicyError):
    pass


TWIN_LOCKED_MESSAGE = (
    "This version already has labeling jobs, so its twin can no longer change: "
    "create a new version to change the twin."
)
TWIN_BACKEND_MISSING_MESSAGE = (
    "No twin generator is configured (COPE_TWIN_BACKEND=none). Set COPE_TWIN_BACKEND with "
    "COPE_TWIN_MODEL (a local model) or COPE_TWIN_BASE_URL (an OpenAI-compatible server) on "
    "the web app and the GPU worker, or write the twin by hand."
)


def _check_length(text: str, what: str) -> None:
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyError(
            f"The {what} is {len(text):,} characters long; the limit is {MAX_POLICY_CHARS:,}."
        )


def version_has_jobs(version: Version) -> bool:
    """Whether labeling has jobs of this version (asked through ``policies.hooks``)."""
    return version.pk in hooks.versions_with_jobs([version.pk])


def create_policy(
    *,
    name: str,
    description: str = "",
    agreement_threshold: float | None = None,
    min_sample_size: int | None = None,
    created_by: User,
) -> Policy:
    return Policy.objects.create(
        name=name.strip(),
        description=description,
        agreement_threshold=(
            settings.COPE_DEFAULT_THRESHOLD if agreement_threshold is None else agreement_threshold
        ),
        min_sample_size=(
            settings.COPE_DEFAULT_MIN_SAMPLE if min_sample_size is None else min_sample_size
        ),
        created_by=created_by,
    )


def create_version(
    *,
    policy: Policy,
    text: str,
    twin_text: str = "",
    change_note: str = "",
    author: User,
    parent: Version | None = None,
) -> Version:
    """Version ``max + 1`` of ``policy``. A twin, if given, must not be empty or a copy of the
    text; how its structure differs is saved with it as warnings.

    A twin copied unchanged from the parent keeps the parent's origin (model, prompt, figures).
    """
    _check_length(text, "policy text")
    _check_length(twin_text, "twin")
    if not text.strip():
        raise PolicyError("The policy text is empty.")
    if parent is not None and parent.policy_id != policy.pk:
        raise PolicyError("The parent version belongs to another policy.")
    if twin_text.strip():
        problems = twin_problems(text, twin_text)
        if problems:
            raise TwinRejected(*problems)
    with transaction.atomic():
        # Lock the policy row so two saves cannot take the same number.
        locked = Policy.objects.select_for_update().get(pk=policy.pk)
        latest = locked.versions.aggregate(n=Max("number"))["n"] or 0
        if latest and not change_note.strip():
            raise PolicyError("Say what changed: a change note is required from version 2 on.")
        twin_fields: dict[str, Any] = {}
        if twin_text.strip():
            twin_fields = {
                "twin_origin": TwinOrigin.HAND,
                "twin_updated_at": timezone.now(),
                "twin_warnings": twin_warnings(text, twin_text),
            }
            if parent is not None and parent.twin_text == twin_text:
                twin_fields.update(
                    twin_origin=parent.twin_origin,
                    twin_model=parent.twin_model,
                    twin_prompt=parent.twin_prompt,
                    twin_similarity=parent.twin_similarity,
                )
        version = Version.objects.create(
            policy=locked,
            number=latest + 1,
            text=text,
            twin_text=twin_text if twin_text.strip() else "",
            change_note=change_note.strip(),
            author=author,
            parent=parent,
            **twin_fields,
        )
        Policy.objects.filter(pk=locked.pk).update(updated_at=timezone.now())
    return version


def update_twin(*, version: Version, twin_text: str, by: User) -> Version:
    """Replace the twin with one written by hand; refused once the version has jobs."""
    _check_length(twin_text, "twin")
    problems = twin_problems(version.text, twin_text)
    if problems:
        raise TwinRejected(*problems)
    with transaction.atomic():
        locked = Version.objects.select_for_update().get(pk=version.pk)
        if version_has_jobs(locked):
            raise TwinLocked(TWIN_LOCKED_MESSAGE)
        Version.objects.filter(pk=locked.pk).update(
            twin_text=twin_text,
            twin_origin=TwinOrigin.HAND,
            twin_model="",
            twin_prompt="",
            twin_similarity={},
            twin_warnings=twin_warnings(version.text, twin_text),
            twin_updated_at=timezone.now(),
        )
    log.info("twin of %s written by hand by user %s", version, by.pk)
    version.refresh_from_db()
    return version


def twin_generation_enabled() -> bool:
    return settings.COPE_TWIN_BACKEND.strip().lower() not in ("", "none")


def _send_twin_request(twinjob_id: int, policy_text: str) -> None:
    request = TwinRequest(request_id=twinjob_id, policy=policy_text)
    celery_app.send_task(GENERATE_TWIN_TASK, args=[request.to_dict()], queue=GPU_QUEUE)


def request_twin(*, version: Version, by: User) -> TwinJob:
    """Queue a twin generation on a GPU worker; the returned row is what the page shows."""
    if not twin_generation_enabled():
        raise TwinBackendMissing(TWIN_BACKEND_MISSING_MESSAGE)
    with transaction.atomic():
        if version_has_jobs(version):
            raise TwinLocked(TWIN_LOCKED_MESSAGE)
        twinjob = TwinJob.objects.create(version=version, requested_by=by)
        text = version.text
        transaction.on_commit(lambda: _send_twin_request(twinjob.pk, text))
    return twinjob


@dataclass(frozen=True)
class TwinCloseness:
    """How much of the text the twin rewords, against the configured floor."""

    changed_share: float  # 0-1, the word diff's measure (``DiffStats.changed_share``)
    floor: float

    @property
    def nearly_copy(self) -> bool:
        return self.changed_share < self.floor

    @property
    def percent(self) -> float:
        return 100 * self.changed_share

    @property
    def floor_percent(self) -> float:
        return 100 * self.floor


def twin_closeness(text: str, twin: str) -> TwinCloseness | None:
    """The share of words changed from ``text`` to ``twin`` (None without a twin)."""
    if not twin.strip():
        return None
    share = diff_stats(text, twin).changed_share
    return TwinCloseness(changed_share=share, floor=settings.COPE_TWIN_MIN_CHANGED_WORDS)


def finalize_version(
    *,
    version: Version,
    by: User,
    override_reason: str = "",
    evidence: dict[str, Any] | None = None,
) -> Version:
    """Mark ``version`` finalized, with the admin's override reason and the deciding job's
    evidence. Labeling checks readiness and locks the rows (one transaction) before this."""
    changed = Version.objects.filter(pk=version.pk, finalized_at__isnull=True).update(
        finalized_at=timezone.now(),
        finalized_by=by,
        finalize_override=override_reason.strip(),
        finalize_evidence=evidence or {},
    )
    if changed != 1:
        raise AlreadyFinalized(f"{version} is already finalized.")
    version.refresh_from_db()
    return version


def update_policy_settings(
    *,
    policy: Policy,
    agreement_threshold: float,
    min_sample_size: int,
    min_kappa: float | None = None,
    probe_gate: bool | None = None,
    by: User | None = None,
    via: str = SettingPath.SETTINGS,
) -> dict[str, tuple[Any, Any]]:
    """Set the policy's gate settings; ``{field: (old, new)}`` of what changed.

    ``min_kappa`` and ``probe_gate`` None keep the current ones. ``Policy.save`` writes the
    audit rows (one per changed field, ``by`` and ``via`` on each); the caller may own a wider
    transaction.
    """
    if not 0.5 <= agreement_threshold <= 1.0:
        raise ValueError("The agreement threshold must be between 50% and 100%.")
    if min_sample_size < 1:
        raise ValueError("The minimum sample must be at least 1.")
    if min_kappa is not None and not 0.0 <= min_kappa <= 1.0:
        raise ValueError("The minimum kappa must be between 0 and 1.")
    with transaction.atomic():
        locked = Policy.objects.select_for_update().get(pk=policy.pk)
        wanted: dict[str, Any] = {
            "agreement_threshold": agreement_threshold,
            "min_sample_size": min_sample_size,
        }
        if min_kappa is not None:
            wanted["min_kappa"] = min_kappa
        if probe_gate is not None:
            wanted["probe_gate"] = probe_gate
        changes = {
            name: (getattr(locked, name), value)
            for name, value in wanted.items()
            if getattr(locked, name) != value
        }
        if changes:
            for name, (_, new) in changes.items():
                setattr(locked, name, new)
            locked.save(update_fields=[*changes, "updated_at"], changed_by=by, via=via)
            for name, (_, new) in changes.items():
                setattr(policy, name, new)
            policy.updated_at = locked.updated_at
    return changes


def _outcome(twinjob: TwinJob, result: TwinResult) -> tuple[str, str]:
    """(status, error) for a worker's answer, re-checking a twin before accepting it.

    Only an empty twin or a copy of the text is rejected; structural differences are warnings
    (``record_twin_result`` saves them with the twin).
    """
    if result.text.strip():
        problems = twin_problems(twinjob.version.text, result.text)
        if problems:
            return TwinJobStatus.REJECTED, "The generated twin was rejected: " + " ".join(problems)
        return TwinJobStatus.SUCCEEDED, ""
    # The generator ran (a prompt is recorded) but its output was empty or a copy;
    # without a prompt it never ran (no backend, an error).
    status = TwinJobStatus.REJECTED if result.prompt and result.model else TwinJobStatus.FAILED
    return status, result.error or "The worker returned no twin and no reason."


def record_twin_result(*, result: TwinResult) -> TwinJob | None:
    """Write a worker's answer once (a redelivered message changes nothing); fill the twin.

    The twin is filled only if the version has no jobs yet: labels already made under the old
    twin must keep matching the version.
    """
    with transaction.atomic():
        twinjob = TwinJob.objects.select_related("version").filter(pk=result.request_id).first()
        if twinjob is None:
            log.warning("twin result for unknown twin job %s dropped", result.request_id)
            return None
        status, error = _outcome(twinjob, result)
        warnings = (
            twin_warnings(twinjob.version.text, result.text)
            if status == TwinJobStatus.SUCCEEDED
            else []
        )
        now = timezone.now()
        changed = TwinJob.objects.filter(pk=twinjob.pk, status=TwinJobStatus.QUEUED).update(
            status=status,
            finished_at=now,
            model=result.model,
            prompt=result.prompt,
            result_text=result.text if status == TwinJobStatus.SUCCEEDED else "",
            similarity=result.similarity,
            warnings=warnings,
            error=error,
        )
        if changed != 1:
            log.info("twin job %s already recorded; duplicate result ignored", twinjob.pk)
            return twinjob
        if status == TwinJobStatus.SUCCEEDED:
            version = Version.objects.select_for_update().get(pk=twinjob.version_id)
            if version_has_jobs(version):
                TwinJob.objects.filter(pk=twinjob.pk).update(
                    error="Not applied: the version got labeling jobs while the twin was written."
                )
            else:
                Version.objects.filter(pk=version.pk).update(
                    twin_text=result.text,
                    twin_origin=TwinOrigin.MODEL,
                    twin_model=result.model,
                    twin_prompt=result.prompt,
                    twin_similarity=result.similarity,
                    twin_warnings=warnings,
                    twin_updated_at=now,
                )
    twinjob.refresh_from_db()
    return twinjob


@dataclass(frozen=True)
class PolicyRow:
    policy: Policy
    status: str  # "draft", "in review", "finalized"
    latest: Version | None
    # The policy's agreement as labeling decides it: the deciding job of the newest version
    # that has one (``policies.hooks``); None until a version has a deciding job.
    figure: hooks.AgreementFigure | None


def archive_policy(*, policy: Policy, by: User) -> bool:
    """Archive ``policy``: gone from lists and choices, kept whole; returns whether this call
    archived it."""
    with transaction.atomic():
        return bool(
            Policy.objects.filter(pk=policy.pk, archived_at__isnull=True).update(
                archived_at=timezone.now(), archived_by=by
            )
        )


def restore_policy(*, policy: Policy) -> bool:
    """Bring an archived policy back; returns whether this call restored it."""
    with transaction.atomic():
        return bool(
            Policy.objects.filter(pk=policy.pk, archived_at__isnull=False).update(
                archived_at=None, archived_by=None
            )
        )


def summarize_policies(*, archived: bool = False) -> list[PolicyRow]:
    """Every policy with its status, latest version and agreement figure.

    Only archived policies with ``archived``, else only the others.
    Status: finalized if any version is; "in review" if the latest version has jobs; else draft.
    The latest version is picked per policy by a subquery, so the rows loaded are one per policy
    and one version each; jobs and figures come from labeling in one call each (a fixed number
    of queries), whatever the number of policies, versions and jobs.
    """
    finalized = Version.objects.filter(policy=OuterRef("pk"), finalized_at__isnull=False)
    latest_version = Version.objects.filter(policy=OuterRef("pk")).order_by("-number")
    policies = list(
        Policy.objects.filter(archived_at__isnull=not archived).annotate(
            is_finalized=Exists(finalized),
            latest_version_id=Subquery(latest_version.values("pk")[:1]),
        )
    )
    latest_ids = [p.latest_version_id for p in policies if p.latest_version_id]
    versions = {
        v.pk: v
        for v in Version.objects.filter(pk__in=latest_ids)
        .select_related("author")
        .defer("text", "twin_text", "twin_prompt")
    }
    with_jobs = hooks.versions_with_jobs(latest_ids)
    figures = hooks.agreement_figures(policies)
    rows = []
    for policy in policies:
        latest_id = policy.latest_version_id
        if policy.is_finalized:
            status = "finalized"
        elif latest_id in with_jobs:
            status = "in review"
        else:
            status = "draft"
        rows.append(
            PolicyRow(
                policy=policy,
                status=status,
                latest=versions.get(latest_id),
                figure=figures.get(policy.pk),
            )
        )
    return rows


def policy_status(policy: Policy) -> str:
    """The list's status for one policy (finalized / in review / draft)."""
    if policy.versions.filter(finalized_at__isnull=False).exists():
        return "finalized"
    latest = policy.versions.order_by("-number").first()
    if latest is not None and version_has_jobs(latest):
        return "in review"
    return "draft"
