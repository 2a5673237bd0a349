"""Reading a policy bundle back (``labeling.release.exports.iter_bundle`` writes it).

``import_bundle`` recreates the policy with its versions, texts, twins, change notes, authors and
timestamps. A bundle is another studio's word, never this studio's record:

- It never adds versions to a policy that is already here (its slug, folded the way this studio
  folds slugs, names one) unless the importer asks for that (``add_to_existing``).
- A version the file calls finalized is not finalized here. It arrives either as a draft, or as
  *imported-finalized*: ``imported_finalized_at``/``imported_finalized_by`` (the source's
  finalizer as a name, never a local account) and ``imported_evidence`` (the file's figures,
  which this studio did not produce, the probe frozen at finalize included). ``finalized_at``
  stays empty, so the API and the finalize gates treat the version as a draft.
- Every field is checked before anything is written; a malformed one is a ``BundleError`` that
  names it. A version already here with the same texts is left alone, so importing a bundle
  twice changes nothing; one whose texts differ is a conflict and nothing is written.

Authors are matched by username; a name unknown here gets an inactive account with no password
and no role, so the history keeps who wrote what without letting anyone in.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, cast

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from cope_studio.lib.text import validate_no_bidi_controls
from policies.models import SLUG_MAX_LENGTH, Policy, TwinOrigin, Version
from policies.services import MAX_POLICY_CHARS, PolicyError

BUNDLE_FORMAT = "cope-studio.policy-bundle"
BUNDLE_FORMAT_VERSION = 1  # the newest this code reads; labeling.release.exports writes the same
MAX_BUNDLE_BYTES = 50 * 1024 * 1024
# A bundle is four levels deep and its evidence a few more; anything far deeper is hostile.
MAX_JSON_DEPTH = 32
MAX_FIELD_DEPTH = 16
MAX_INT = 2_147_483_647  # the largest number the database's integer columns hold
POLICY_NAME_MAX_LENGTH = 200  # Policy.name
NAME_MAX_LENGTH = 150  # usernames and the source studio's finalizer
SOURCE_MAX_LENGTH = 200  # Version.imported_from


class BundleError(PolicyError):
    """The bundle cannot be imported; the message says why and nothing was written."""


class FinalizedAs(models.TextChoices):
    """What a version the file calls finalized becomes here."""

    IMPORTED = "imported", "Imported-finalized (the source's finalizer and evidence, marked)"
    DRAFT = "draft", "Draft (texts only)"


@dataclass(frozen=True)
class ImportResult:
    policy: Policy
    created_policy: bool
    versions_created: int
    versions_unchanged: int

    @property
    def changed(self) -> bool:
        return self.created_policy or bool(self.versions_created)

    def summary(self) -> str:
        if not self.changed:
            return (
                f"Nothing changed: “{self.policy.name}” ({self.policy.slug}) already has all "
                f"{self.versions_unchanged} versions of this bundle."
            )
        verb = "Created" if self.created_policy else "Updated"
        return (
            f"{verb} “{self.policy.name}” ({self.policy.slug}): {self.versions_created} "
            f"version(s) added, {self.versions_unchanged} already here."
        )


@dataclass(frozen=True)
class PolicyEntry:
    name: str
    slug: str
    description: str
    agreement_threshold: float
    min_sample_size: int
    min_kappa: float | None
    probe_gate: bool | None = None  # None: a bundle from before the probe gate
    regression_tolerance: float | None = None  # None: a bundle from before the regression gate


@dataclass(frozen=True)
class VersionEntry:
    number: int
    parent_number: int | None
    text: str
    twin_text: str
    twin_origin: str
    twin_model: str
    twin_prompt: str
    twin_similarity: dict[str, Any]
    twin_warnings: list[str]
    twin_updated_at: datetime | None
    change_note: str
    author: str
    created_at: datetime | None
    finalized_at: datetime | None
    finalized_by: str
    finalize_override: str
    finalize_evidence: dict[str, Any]


# --- reading -----------------------------------------------------------------------------------


def _refuse_constant(name: str) -> None:
    raise BundleError(f"The file holds {name}, which is not a number JSON allows.")


def read_bundle(stream: IO[bytes] | IO[str]) -> dict[str, Any]:
    raw = stream.read(MAX_BUNDLE_BYTES + 1)
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleError(f"The bundle is larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MB.")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise BundleError(
            f"The file nests lists or objects far deeper than a bundle does (over "
            f"{MAX_JSON_DEPTH} levels)."
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"The file is not JSON: {exc}.") from exc
    _check_depth(data, MAX_JSON_DEPTH, "The file", texts=False)
    if not isinstance(data, dict):
        raise BundleError("The file is JSON but not a policy bundle (expected an object).")
    return data


def _check_depth(value: Any, limit: int, where: str, *, texts: bool = True) -> None:
    """Refuse nesting past ``limit`` and (with ``texts``) text the database cannot store (a NUL,
    a lone surrogate) anywhere inside ``value``; iterative, so any depth is safe to walk."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise BundleError(f"{where} nests lists or objects more than {limit} deep.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif texts and isinstance(item, str):
            _check_storable(item, where)


def _check_storable(value: str, where: str) -> None:
    if "\x00" in value:
        raise BundleError(f"{where} holds a NUL character, which cannot be stored.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BundleError(f"{where} holds text that is not valid Unicode ({exc.reason}).") from exc


def _type_name(value: Any) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "text"}
    names.update({list: "a list", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def _text(data: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BundleError(f"{where}: “{key}” must be text, not {_type_name(value)}.")
    if len(value) > MAX_POLICY_CHARS:
        raise BundleError(f"{where}: “{key}” is longer than {MAX_POLICY_CHARS:,} characters.")
    _check_storable(value, f"{where}: “{key}”")
    return value


def _name(data: dict[str, Any], key: str, where: str, *, max_length: int) -> str:
    """A name shown as who did something: one line, no bidirectional controls."""
    value = " ".join(_text(data, key, where).split())
    if len(value) > max_length:
        raise BundleError(f"{where}: “{key}” is longer than {max_length} characters.")
    try:
        validate_no_bidi_controls(value)
    except ValidationError as exc:
        raise BundleError(f"{where}: “{key}”: {exc.messages[0]}") from exc
    return value


def _username(data: dict[str, Any], key: str, where: str) -> str:
    """A username an account may be created with: the rules this studio's accounts follow."""
    value = _name(data, key, where, max_length=NAME_MAX_LENGTH)
    User = get_user_model()
    field = cast(models.Field[Any, Any], User._meta.get_field(User.USERNAME_FIELD))
    if value:
        try:
            field.run_validators(value)
        except ValidationError as exc:
            raise BundleError(f"{where}: “{key}” {value!r:.40}: {exc.messages[0]}") from exc
    return value


def _int(data: dict[str, Any], key: str, where: str, *, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise BundleError(
            f"{where}: “{key}” must be a whole number from 1 to {MAX_INT:,} (got {value!r:.40})."
        )
    return value


def _fraction(data: dict[str, Any], key: str, where: str, *, low: float, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= 1:
        raise BundleError(f"{where}: “{key}” must be a number from {low} to 1 (got {value!r:.40}).")
    return float(value)


def _when(data: dict[str, Any], key: str, where: str) -> datetime | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    problem = f"{where}: “{key}” is not a date and time ({value!r:.60})."
    if not isinstance(value, str):
        raise BundleError(problem)
    try:
        parsed = parse_datetime(value)
        if parsed is not None and timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        if parsed is not None:
            parsed.astimezone(UTC)  # 9999-12-31T23:00-05:00 has no UTC time
    except (ValueError, OverflowError) as exc:
        raise BundleError(problem) from exc
    if parsed is None:
        raise BundleError(problem)
    return parsed


def _object(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BundleError(f"{where}: “{key}” must be an object, not {_type_name(value)}.")
    _check_depth(value, MAX_FIELD_DEPTH, f"{where}: “{key}”")
    return value


def _text_list(data: dict[str, Any], key: str, where: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BundleError(f"{where}: “{key}” must be a list of text, not {_type_name(value)}.")
    _check_depth(value, 1, f"{where}: “{key}”")
    return value


def fold_slug(value: str) -> str:
    """The slug this studio would make of ``value``: ``ｒｅｇｕｌａｔｅｄ`` is ``regulated``."""
    return slugify(unicodedata.normalize("NFKC", value))[:SLUG_MAX_LENGTH].strip("-")


def check_format(data: dict[str, Any]) -> None:
    if data.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"This is not a CoPE Studio policy bundle (format {data.get('format')!r:.60}, "
            f"expected {BUNDLE_FORMAT!r})."
        )
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(
            f"The bundle's “format_version” {version!r:.40} is not a positive integer."
        )
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"This bundle is format version {version}, written by a newer CoPE Studio; this one "
            f"reads format versions up to {BUNDLE_FORMAT_VERSION}. Upgrade CoPE Studio to "
            "import it."
        )


def parse_policy(data: dict[str, Any]) -> PolicyEntry:
    policy = data.get("policy")
    if not isinstance(policy, dict):
        raise BundleError("The bundle has no “policy” object.")
    where = "Policy"
    name = _name(policy, "name", where, max_length=POLICY_NAME_MAX_LENGTH)
    if not name:
        raise BundleError("Policy: “name” is empty.")
    slug = fold_slug(_text(policy, "slug", where, required=True))
    if not slug:
        raise BundleError("Policy: “slug” is empty once folded to letters, digits and dashes.")
    min_kappa = None
    if policy.get("min_kappa") is not None:
        min_kappa = _fraction(policy, "min_kappa", where, low=0.0, default=0.0)
    probe_gate = policy.get("probe_gate")
    if probe_gate is not None and not isinstance(probe_gate, bool):
        raise BundleError(f"Policy: “probe_gate” must be true/false, not {_type_name(probe_gate)}.")
    tolerance = None
    if policy.get("regression_tolerance") is not None:
        tolerance = _fraction(policy, "regression_tolerance", where, low=0.0, default=0.0)
    return PolicyEntry(
        name=name,
        slug=slug,
        description=_text(policy, "description", where),
        agreement_threshold=_fraction(policy, "agreement_threshold", where, low=0.5, default=0.95),
        min_sample_size=_int(policy, "min_sample_size", where, default=200),
        min_kappa=min_kappa,
        probe_gate=probe_gate,
        regression_tolerance=tolerance,
    )


def _parse_version(entry: Any, position: int) -> VersionEntry:
    if not isinstance(entry, dict):
        raise BundleError(f"Version entry {position} is not an object.")
    number = _int(entry, "number", f"Version entry {position}")
    where = f"Version {number}"
    origin = entry.get("twin_origin")
    if origin is None or origin == "":
        origin = TwinOrigin.NONE
    if not isinstance(origin, str) or origin not in TwinOrigin.values:
        raise BundleError(f"{where}: unknown “twin_origin” {origin!r:.40}.")
    text = _text(entry, "text", where, required=True)
    if not text.strip():
        raise BundleError(f"{where}: “text” is empty.")
    parent = None
    if entry.get("parent_number") is not None:
        parent = _int(entry, "parent_number", where)
        if parent >= number:
            raise BundleError(f"{where}: “parent_number” must be an earlier version's number.")
    return VersionEntry(
        number=number,
        parent_number=parent,
        text=text,
        twin_text=_text(entry, "twin_text", where),
        twin_origin=origin,
        twin_model=_text(entry, "twin_model", where)[:300],
        twin_prompt=_text(entry, "twin_prompt", where),
        twin_similarity=_object(entry, "twin_similarity", where),
        twin_warnings=_text_list(entry, "twin_warnings", where),
        twin_updated_at=_when(entry, "twin_updated_at", where),
        change_note=_text(entry, "change_note", where),
        author=_username(entry, "author", where),
        created_at=_when(entry, "created_at", where),
        finalized_at=_when(entry, "finalized_at", where),
        finalized_by=_name(entry, "finalized_by", where, max_length=NAME_MAX_LENGTH),
        finalize_override=_text(entry, "finalize_override", where),
        finalize_evidence=_evidence(entry, where),
    )


def _evidence(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """The finalize evidence, with its probe (``probe``: the version's probe frozen at
    finalize) checked for the shape the pages read: a summary object whose figures are
    objects, and shares between 0 and 1."""
    evidence = _object(entry, "finalize_evidence", where)
    _regression(evidence.get("regression"), f"{where}: “finalize_evidence.regression”")
    probe = evidence.get("probe")
    if probe is None:
        return evidence
    here = f"{where}: “finalize_evidence.probe”"
    if not isinstance(probe, dict) or not isinstance(probe.get("summary"), dict):
        raise BundleError(f"{here} must be an object with a “summary” object.")
    summary = probe["summary"]
    steer = summary.get("steerability") or {}
    figures = {
        "leakage": summary.get("leakage"),
        "rewording": summary.get("rewording"),
        "steerability": summary.get("steerability"),
        "steerability.flips": steer.get("flips") if isinstance(steer, dict) else None,
        "steerability.stable": steer.get("stable") if isinstance(steer, dict) else None,
    }
    for name, figure in figures.items():
        if figure is None:
            continue
        if not isinstance(figure, dict):
            raise BundleError(f"{here}: “{name}” must be an object, not {_type_name(figure)}.")
        share = figure.get("share")
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
        ):
            raise BundleError(f"{here}: “{name}.share” must be a number from 0 to 1.")
    _text_list(summary, "dead", here)
    _text_list(probe, "warnings", here)
    return evidence


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _regression(regression: Any, here: str) -> None:
    """The regression diff frozen at finalize (``labeling.release.regression``), checked for
    the shape the pages read: figures that are numbers (or null), changed items with an id."""
    if regression is None:
        return
    if not isinstance(regression, dict):
        raise BundleError(f"{here} must be an object, not {_type_name(regression)}.")
    for name in ("baseline", "before", "after", "drops", "changed"):
        part = regression.get(name)
        if part is not None and not isinstance(part, dict):
            raise BundleError(f"{here}: “{name}” must be an object, not {_type_name(part)}.")
    for name in ("before", "after", "drops"):
        for key, value in (regression.get(name) or {}).items():
            if value is not None and not _number(value):
                raise BundleError(f"{here}: “{name}.{key}” must be a number or null.")
    for name in ("n", "tolerance"):
        if regression.get(name) is not None and not _number(regression[name]):
            raise BundleError(f"{here}: “{name}” must be a number.")
    changed = regression.get("changed") or {}
    for kind in ("fixed", "broken", "other"):
        rows = changed.get(kind)
        if rows is None:
            continue
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("item"), int) for r in rows
        ):
            raise BundleError(f"{here}: “changed.{kind}” must be a list of items with an id.")
    note = regression.get("note")
    if note is not None and not isinstance(note, str):
        raise BundleError(f"{here}: “note” must be text, not {_type_name(note)}.")


def parse_versions(data: dict[str, Any]) -> list[VersionEntry]:
    versions = data.get("versions")
    if not isinstance(versions, list) or not versions:
        raise BundleError("The bundle has no “versions”.")
    parsed = [_parse_version(entry, i) for i, entry in enumerate(versions, start=1)]
    numbers = [v.number for v in parsed]
    if len(set(numbers)) != len(numbers):
        raise BundleError("The bundle lists a version “number” twice.")
    return sorted(parsed, key=lambda v: v.number)


# --- writing -----------------------------------------------------------------------------------


def _user(username: str, fallback: Any) -> Any:
    if not username:
        return fallback
    User = get_user_model()
    user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
    if user is None:
        user = User(**{User.USERNAME_FIELD: username}, is_active=False)
        user.set_unusable_password()
        user.save()
    return user


def _finalize_fields(entry: VersionEntry, finalized_as: str) -> dict[str, Any]:
    """The file's finalize record, kept apart from this studio's (see the module docstring)."""
    if entry.finalized_at is None or finalized_as == FinalizedAs.DRAFT:
        return {}
    evidence = dict(entry.finalize_evidence)
    if entry.finalize_override and not evidence.get("override_reason"):
        evidence["override_reason"] = entry.finalize_override
    return {
        "imported_finalized_at": entry.finalized_at,
        "imported_finalized_by": entry.finalized_by,
        "imported_evidence": evidence,
    }


def _create_version(
    policy: Policy, entry: VersionEntry, *, parent: Version | None, by: Any, **imported: Any
) -> Version:
    version = Version.objects.create(
        policy=policy,
        number=entry.number,
        text=entry.text,
        twin_text=entry.twin_text,
        twin_origin=entry.twin_origin,
        twin_model=entry.twin_model,
        twin_prompt=entry.twin_prompt,
        twin_similarity=entry.twin_similarity,
        twin_warnings=entry.twin_warnings,
        twin_updated_at=entry.twin_updated_at,
        change_note=entry.change_note,
        author=_user(entry.author, by),
        parent=parent,
        **imported,
    )
    if entry.created_at is not None:  # auto_now_add ignores the value on create
        Version.objects.filter(pk=version.pk).update(created_at=entry.created_at)
    return version


def _create_policy(entry: PolicyEntry, *, by: Any) -> Policy:
    if Policy.objects.filter(name=entry.name).exists():
        raise BundleError(
            f"A policy named “{entry.name}” already exists here with another slug; rename one "
            "of them before importing."
        )
    gates: dict[str, Any] = {"min_kappa": entry.min_kappa} if entry.min_kappa is not None else {}
    if entry.probe_gate is not None:
        gates["probe_gate"] = entry.probe_gate
    if entry.regression_tolerance is not None:
        gates["regression_tolerance"] = entry.regression_tolerance
    return Policy.objects.create(
        name=entry.name,
        slug=entry.slug,
        description=entry.description,
        agreement_threshold=entry.agreement_threshold,
        min_sample_size=entry.min_sample_size,
        created_by=by,
        **gates,
    )


def _new_entries(
    policy: Policy, entries: list[VersionEntry], existing: dict[int, Version]
) -> list[VersionEntry]:
    """The bundle's versions not here yet; a version here with other texts is a conflict."""
    new = []
    for entry in entries:
        here = existing.get(entry.number)
        if here is None:
            new.append(entry)
        elif here.text != entry.text or here.twin_text != entry.twin_text:
            raise BundleError(
                f"Version {entry.number} of “{policy.name}” here differs from the bundle's "
                "(text or twin); nothing was imported."
            )
    return new


def _refuse_existing(policy: Policy, new: list[VersionEntry]) -> None:
    numbers = ", ".join(f"v{e.number}" for e in new[:5]) + ("…" if len(new) > 5 else "")
    raise BundleError(
        f"A policy with the slug “{policy.slug}” is already here (“{policy.name}”); the bundle "
        f"would add {numbers} to it. An import adds versions to an existing policy only when "
        "you choose to (“Add to the existing policy”, or --add-to-existing); nothing was "
        "imported."
    )


def import_bundle(
    data: dict[str, Any],
    *,
    by: Any,
    source: str,
    add_to_existing: bool = False,
    finalized_as: str = FinalizedAs.IMPORTED,
) -> ImportResult:
    """Recreate the bundle's policy and versions here (see the module docstring); ``source``
    names where the bundle comes from and is kept on every version it adds."""
    check_format(data)
    policy_entry = parse_policy(data)
    entries = parse_versions(data)
    imported_from = _name({"source": source}, "source", "Import", max_length=SOURCE_MAX_LENGTH)
    if not imported_from:
        raise BundleError("Import: “source” is empty: say which studio the bundle comes from.")
    try:
        with transaction.atomic():
            policy = Policy.objects.select_for_update().filter(slug=policy_entry.slug).first()
            created_policy = policy is None
            if policy is None:
                policy = _create_policy(policy_entry, by=by)
            existing = {v.number: v for v in policy.versions.all()}
            new = _new_entries(policy, entries, existing)
            if new and not created_policy and not add_to_existing:
                _refuse_existing(policy, new)
            for entry in new:
                parent = existing.get(entry.parent_number) if entry.parent_number else None
                existing[entry.number] = _create_version(
                    policy,
                    entry,
                    parent=parent,
                    by=by,
                    imported_from=imported_from,
                    **_finalize_fields(entry, finalized_as),
                )
    except IntegrityError as exc:
        raise BundleError(
            f"“{policy_entry.name}” changed here while it was being imported (another import "
            "or a new version at the same moment); nothing was imported. Try again."
        ) from exc
    return ImportResult(
        policy=policy,
        created_policy=created_policy,
        versions_created=len(new),
        versions_unchanged=len(entries) - len(new),
    )
