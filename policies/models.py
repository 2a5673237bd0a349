"""Policies, their immutable versions (primary text A + twin B), and twin generation requests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils.text import slugify

if TYPE_CHECKING:
    from django.contrib.auth.models import User

_P = TypeVar("_P", bound="Policy")

SLUG_MAX_LENGTH = 100


def unique_policy_slug(name: str, *, taken: set[str] | None = None) -> str:
    """A slug for ``name`` that no policy has yet: ``hate-speech``, then ``hate-speech-2``...

    ``taken`` lets a data migration pass the slugs it has handed out; otherwise the table is asked.
    """
    base = slugify(name)[: SLUG_MAX_LENGTH - 6].strip("-") or "policy"
    candidate, n = base, 1
    while (
        candidate in taken if taken is not None else Policy.objects.filter(slug=candidate).exists()
    ):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def percent_text(value: float) -> str:
    """A share as the pages write it: 0.95 → "95%", 0.975 → "97.5%", 0.5555 → "55.55%".

    Percent, with no decimal that says nothing: one way of writing a threshold everywhere.
    """
    text = f"{float(value) * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


# More independent decisions per mismatch than any team we know of asks for.
MAX_REVIEW_OVERLAP = 5

# The settings that gate a finalize, audited wherever they change (``PolicySettingChange``).
AUDITED_SETTINGS = (
    "agreement_threshold",
    "min_sample_size",
    "min_kappa",
    "probe_gate",
    "regression_tolerance",
    "review_overlap",
)
SETTING_NAMES = {
    "agreement_threshold": "agreement threshold",
    "min_sample_size": "minimum sample",
    "min_kappa": "minimum kappa",
    "probe_gate": "probe findings at finalize",
    "regression_tolerance": "regression tolerance",
    "review_overlap": "review overlap",
    "evaluation_set": "evaluation set",
    "webhook_url": "webhook URL",
    "webhook_enabled": "webhook",
    "webhook_secret": "webhook secret",
}


def setting_text(field: str, value: Any) -> str:
    """A gate setting's value as the Settings page shows it (and its audit rows keep it)."""
    if field == "agreement_threshold":
        return percent_text(value)
    if field == "min_kappa":
        return f"{float(value):.2f}"
    if field == "regression_tolerance":
        return percent_text(value)
    if field == "probe_gate":
        return "refuse" if value else "warn"
    return str(value)


class PolicyQuerySet(models.QuerySet[_P, _P]):
    def update(self, **kwargs: Any) -> int:
        """A bulk update that changes a gate setting leaves an audit row per policy and setting,
        like ``Policy.save`` (no user is known here: ``via`` "shell")."""
        audited = [name for name in AUDITED_SETTINGS if name in kwargs]
        if not audited:
            return super().update(**kwargs)
        with transaction.atomic(using=self.db):
            before = {row["pk"]: row for row in self.select_for_update().values("pk", *audited)}
            count = super().update(**kwargs)
            after = Policy.objects.using(self.db).filter(pk__in=list(before))
            rows = [
                PolicySettingChange(
                    policy_id=new["pk"],
                    field=name,
                    old_value=setting_text(name, before[new["pk"]][name]),
                    new_value=setting_text(name, new[name]),
                    via=SettingPath.SHELL,
                )
                for new in after.values("pk", *audited)
                for name in audited
                if new[name] != before[new["pk"]][name]
            ]
            PolicySettingChange.objects.using(self.db).bulk_create(rows)
        return count

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refuses a policy with a finalized version (Django admin's bulk delete comes here)."""
        refuse_policy_deletion(self)
        return super().delete()


# Benchmarks remove the finalized versions they made themselves; nothing else may.
_record_deletion = ContextVar("record_deletion", default=False)


@contextmanager
def allow_record_deletion() -> Iterator[None]:
    """Within it, finalized records (a policy with a finalized version, its sets) may be
    deleted: only for a benchmark's cleanup of the rows it created."""
    token = _record_deletion.set(True)
    try:
        yield
    finally:
        _record_deletion.reset(token)


def record_deletion_allowed() -> bool:
    return _record_deletion.get()


def refuse_policy_deletion(policies: models.QuerySet[Policy]) -> None:
    """Raise ``ProtectedError`` for the first of ``policies`` with a finalized version (here or
    imported as finalized), before any row is collected: its record is kept; archive the
    policy instead."""
    if record_deletion_allowed():
        return
    finalized = models.Q(finalized_at__isnull=False) | models.Q(imported_finalized_at__isnull=False)
    version = (
        Version.objects.filter(finalized, policy__in=policies)
        .select_related("policy")
        .order_by("policy_id", "number")
        .first()
    )
    if version is not None:
        raise ProtectedError(
            f"Policy “{version.policy.name}” cannot be deleted: version {version.number} is "
            "finalized, and a finalized version is a record. Archive the policy instead.",
            {version},
        )


class SettingPath(models.TextChoices):
    """Which way a gate setting was changed, for its audit row."""

    SETTINGS = "settings", "Settings page"
    ADMIN = "admin", "Django admin"
    SHELL = "shell", "shell or script"


class Policy(models.Model):
    """A named labeler for one harm area; owns its versions, threshold and minimum sample.

    A change of a gate setting (``AUDITED_SETTINGS``) is audited by ``save`` itself, whatever
    called it: one ``PolicySettingChange`` per changed field, with the user and path passed as
    ``save(changed_by=..., via=...)`` (none and "shell" when not given).
    """

    name = models.CharField(max_length=200, unique=True)
    # Set once from the name when the policy is created and never changed afterwards: API
    # clients, exports and import_policy identify the policy by it.
    slug = models.SlugField(max_length=SLUG_MAX_LENGTH, unique=True, editable=False)
    description = models.TextField(blank=True)
    agreement_threshold = models.FloatField(
        default=0.95,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Agreement between the two wordings needed to finalize (0.5–1.0).",
    )
    min_sample_size = models.PositiveIntegerField(
        default=200,
        validators=[MinValueValidator(1)],
        help_text="Items a job must label on both sides before a version can be finalized.",
    )
    min_kappa = models.FloatField(
        default=0.60,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Cohen's kappa between the two wordings needed to finalize (0.0–1.0).",
    )
    # Probe findings (topic leakage above COPE_PROBE_MAX_LEAKAGE, dead clauses) at finalize:
    # False warns, True refuses (labeling.probes; labeling.release.finalize).
    probe_gate = models.BooleanField(
        default=False,
        help_text="Refuse to finalize a version whose probe shows topic leakage or dead clauses.",
    )
    # Finalize compares a version with the policy's last finalized one on the evaluation set's
    # gold items and refuses (unless an admin gives a reason) when gold F1 or either class's
    # recall drops by more than this (labeling.release.regression).
    regression_tolerance = models.FloatField(
        default=0.02,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Largest drop of gold F1 or of a class's recall allowed against the last "
        "finalized version (0.0–1.0).",
    )
    # How many reviewers decide each mismatch independently (labeling.review.votes). With more
    # than one, a mismatch is reviewed once they agree on the label or a lead adjudicated.
    review_overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_REVIEW_OVERLAP)],
        help_text="Independent reviewer decisions each mismatch needs (1 = one reviewer decides).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="policies_created"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Archived: gone from lists and choices, kept with its history, restorable. A policy with a
    # finalized version is never deleted (``policies.records``), only archived.
    archived_at = models.DateTimeField(null=True, blank=True)
    archived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = models.Manager.from_queryset(PolicyQuerySet)()

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"
        permissions = [("finalize_version", "Can finalize a policy version")]

    def __str__(self) -> str:
        return self.name

    def save(
        self,
        *args: Any,
        changed_by: User | None = None,
        via: str = SettingPath.SHELL,
        **kwargs: Any,
    ) -> None:
        # Every way of creating a policy (service, admin, seed and bench commands) gets a slug.
        if not self.slug:
            self.slug = unique_policy_slug(self.name)
        if self.pk is None or self._state.adding:
            super().save(*args, **kwargs)
            return
        fields = kwargs.get("update_fields")
        audited = [n for n in AUDITED_SETTINGS if fields is None or n in fields]
        if not audited:
            super().save(*args, **kwargs)
            return
        using = kwargs.get("using") or self._state.db or "default"
        with transaction.atomic(using=using):
            stored = (
                Policy.objects.using(using)
                .select_for_update()
                .filter(pk=self.pk)
                .values(*audited)
                .first()
            )
            super().save(*args, **kwargs)
            if stored is None:
                return
            changes = [
                PolicySettingChange(
                    policy=self,
                    field=name,
                    old_value=setting_text(name, stored[name]),
                    new_value=setting_text(name, getattr(self, name)),
                    changed_by=changed_by,
                    via=via,
                )
                for name in audited
                if stored[name] != getattr(self, name)
            ]
            PolicySettingChange.objects.using(using).bulk_create(changes)

    def get_absolute_url(self) -> str:
        return reverse("policies:detail", args=[self.pk])

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        refuse_policy_deletion(Policy.objects.filter(pk=self.pk))
        return super().delete(*args, **kwargs)

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def threshold_display(self) -> str:
        return percent_text(self.agreement_threshold)

    @property
    def min_kappa_display(self) -> str:
        return setting_text("min_kappa", self.min_kappa)


class TwinOrigin(models.TextChoices):
    NONE = "none", "No twin yet"
    HAND = "hand", "Written by hand"
    MODEL = "model", "Generated by a model"


# What a finalized version is a record of: once ``finalized_at`` is stored, no path may change
# these. A version imported as finalized elsewhere is a record of that studio's finalize: its
# texts and import fields are frozen, and this studio may still finalize it once, on its own
# evidence.
_TEXT_FIELDS = ("policy_id", "number", "text", "twin_text", "twin_warnings", "change_note")
_FINALIZE_FIELDS = ("finalized_at", "finalized_by_id", "finalize_override", "finalize_evidence")
_IMPORT_FIELDS = (
    "imported_from", "imported_finalized_at", "imported_finalized_by", "imported_evidence",
)  # fmt: skip
FROZEN_FIELDS = _TEXT_FIELDS + _FINALIZE_FIELDS + _IMPORT_FIELDS
IMPORTED_FROZEN_FIELDS = _TEXT_FIELDS + _IMPORT_FIELDS


def _update_names(fields: tuple[str, ...]) -> frozenset[str]:
    """The fields as ``update()`` keyword names (a foreign key by its name or its column)."""
    return frozenset(fields) | {f.removesuffix("_id") for f in fields if f.endswith("_id")}


class FrozenVersionError(ValidationError):
    """A change to a finalized version's record was asked for; nothing was written."""

    def __init__(self, version: str, fields: list[str]) -> None:
        names = ", ".join(f.removesuffix("_id") for f in fields)
        super().__init__(
            f"{version} is finalized: its {names} cannot change. Create a new version instead.",
            code="finalized",
        )
        self.fields = fields


class VersionQuerySet(models.QuerySet["Version"]):
    def update(self, **kwargs: Any) -> int:
        """Refuses to touch a frozen field of a finalized version (``bulk_update`` comes here
        too). Finalizing itself updates rows filtered on ``finalized_at__isnull=True``."""
        for records, fields in (
            (self.filter(finalized_at__isnull=False), FROZEN_FIELDS),
            (self.filter(imported_finalized_at__isnull=False), IMPORTED_FROZEN_FIELDS),
        ):
            frozen = sorted(_update_names(fields).intersection(kwargs))
            if frozen:
                first = records.order_by("pk").values_list("pk", flat=True).first()
                if first is not None:
                    raise FrozenVersionError(f"Version #{first}", frozen)
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        refuse_version_deletion(self)
        return super().delete()


def refuse_version_deletion(versions: models.QuerySet[Version]) -> None:
    """Raise ``ProtectedError`` for the first finalized version of ``versions``, before any
    row is collected (a ``pre_delete`` backstop covers cascades)."""
    if record_deletion_allowed():
        return
    finalized = models.Q(finalized_at__isnull=False) | models.Q(imported_finalized_at__isnull=False)
    version = versions.filter(finalized).select_related("policy").order_by("pk").first()
    if version is not None:
        raise ProtectedError(
            f"{version} is finalized: a finalized version is a record and cannot be deleted. "
            "Archive its policy instead.",
            {version},
        )


class Version(models.Model):
    """An immutable snapshot of a policy: primary text (A) and twin (B).

    ``text`` never changes after creation. The twin may be edited or regenerated only until the
    version has labels; after that every change is a new version. Once finalized, the version's
    record (``FROZEN_FIELDS``: texts, evidence, override, warnings, who and when) is refused by
    ``save``, ``clean`` (forms, admin) and ``update``.
    """

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    text = models.TextField()
    twin_text = models.TextField(blank=True)
    twin_origin = models.CharField(
        max_length=10, choices=TwinOrigin.choices, default=TwinOrigin.NONE
    )
    twin_model = models.CharField(max_length=300, blank=True)
    twin_prompt = models.TextField(blank=True)
    twin_similarity = models.JSONField(default=dict, blank=True)
    twin_updated_at = models.DateTimeField(null=True, blank=True)
    # How the twin's structure differs from the text (label codes, criteria counts, sections):
    # allowed, shown beside the twin and on every job comparing them.
    twin_warnings = models.JSONField(default=list, blank=True)
    change_note = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="versions_authored"
    )
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    finalized_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="versions_finalized",
    )
    # An admin's reason for finalizing on labels that are not CoPE's (a weak backend).
    finalize_override = models.TextField(blank=True)
    # The deciding job's evidence as it stood at finalize (exports carry it).
    finalize_evidence = models.JSONField(default=dict, blank=True)
    # A version brought in from another studio's bundle: where from, and, when the file called it
    # finalized there, that studio's finalizer (a name, never a local account), date and evidence.
    # Kept apart from finalized_* on purpose: this studio never finalized it.
    imported_from = models.CharField(max_length=200, blank=True)
    imported_finalized_at = models.DateTimeField(null=True, blank=True)
    imported_finalized_by = models.CharField(max_length=150, blank=True)
    imported_evidence = models.JSONField(default=dict, blank=True)

    objects = models.Manager.from_queryset(VersionQuerySet)()

    class Meta:
        ordering = ["policy", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="version_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.policy.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        fields = kwargs.get("update_fields")
        changed = self.frozen_changes(kwargs.get("using"))
        if fields is not None:
            changed = [n for n in changed if n in fields or n.removesuffix("_id") in fields]
        if changed:
            raise FrozenVersionError(str(self), changed)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("policies:version", args=[self.pk])

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        refuse_version_deletion(Version.objects.filter(pk=self.pk))
        return super().delete(*args, **kwargs)

    def frozen_changes(self, using: str | None = None) -> list[str]:
        """The frozen fields this instance would change on a finalized stored row ([] when the
        stored row is not finalized, or there is none)."""
        if self.pk is None or self._state.adding:
            return []
        manager = Version.objects.db_manager(using or self._state.db or "default")
        stored = manager.filter(pk=self.pk).values(*FROZEN_FIELDS).first()
        if stored is None:
            return []
        fields: tuple[str, ...]
        if stored["finalized_at"] is not None:
            fields = FROZEN_FIELDS
        elif stored["imported_finalized_at"] is not None:
            fields = IMPORTED_FROZEN_FIELDS
        else:
            return []
        return [name for name in fields if stored[name] != getattr(self, name)]

    def clean(self) -> None:
        super().clean()
        changed = self.frozen_changes()
        if changed:
            raise FrozenVersionError(str(self), changed)

    @property
    def is_finalized(self) -> bool:
        return self.finalized_at is not None

    @property
    def has_twin(self) -> bool:
        return bool(self.twin_text.strip())


class TwinJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SUCCEEDED = "succeeded", "Succeeded"
    REJECTED = "rejected", "Rejected (empty or a copy of the text)"
    FAILED = "failed", "Failed"


class TwinJob(models.Model):
    """One request to generate a twin on a worker; the row is what the UI shows."""

    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="twin_jobs")
    status = models.CharField(
        max_length=10, choices=TwinJobStatus.choices, default=TwinJobStatus.QUEUED
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    model = models.CharField(max_length=300, blank=True)
    prompt = models.TextField(blank=True)
    result_text = models.TextField(blank=True)
    similarity = models.JSONField(default=dict, blank=True)
    warnings = models.JSONField(default=list, blank=True)  # the twin's structural differences
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["version", "-created_at"])]

    def __str__(self) -> str:
        return f"Twin job {self.pk} for {self.version} ({self.status})"


class PolicySettingChange(models.Model):
    """One change of a policy's gate settings or evaluation set: who, when, old and new value.

    Written by the model layer (``Policy.save`` and labeling's evaluation-set choice), so every
    path that changes a setting leaves a row; ``changed_by`` is empty where no user was known
    (the shell, a script), and ``via`` says which path it was.
    """

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="setting_changes")
    field = models.CharField(max_length=40)
    old_value = models.CharField(max_length=300, blank=True)
    new_value = models.CharField(max_length=300, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    via = models.CharField(max_length=20, blank=True)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The table was created by labeling, which owned this model before; kept, not renamed.
        db_table = "labeling_policysettingchange"
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["policy", "-changed_at"], name="labeling_po_policy__7a273e_idx")
        ]

    def __str__(self) -> str:
        return f"{self.field}: {self.old_value} → {self.new_value}"

    @property
    def field_display(self) -> str:
        return SETTING_NAMES.get(self.field, self.field)

    @property
    def via_display(self) -> str:
        if self.via in SettingPath.values:
            return SettingPath(self.via).label
        return self.via or "—"


def refuse_finalized_version_deletion(sender: Any, instance: Version, **kwargs: Any) -> None:
    """``pre_delete`` of a version: the backstop for a path no early check saw (a cascade
    from another table); ``Version.delete``, its queryset's and the policy's refuse first,
    before a transaction has begun."""
    if record_deletion_allowed():
        return
    if instance.finalized_at is not None or instance.imported_finalized_at is not None:
        raise ProtectedError(
            f"{instance} is finalized: a finalized version is a record and cannot be deleted. "
            "Archive its policy instead.",
            {instance},
        )
