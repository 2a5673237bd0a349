"""Reading a policy bundle back (``labeling.release.exports.iter_bundle`` writes it).

``import_bundle`` recreates the policy (by slug) with every version, its texts, twin, change
note, author, timestamps, finalize state, override reason and frozen evidence. It is
idempotent: a version already here with the same texts is left alone, so importing a bundle
twice changes nothing. A version here whose texts differ from the bundle's is a conflict and
nothing is written. A bundle from a newer format than this studio reads is refused.

Authors and finalizers are matched by username; a name unknown here gets an inactive account
with no password and no role, so the history keeps who wrote what without letting anyone in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from policies.models import SLUG_MAX_LENGTH, Policy, TwinOrigin, Version
from policies.services import MAX_POLICY_CHARS, PolicyError

BUNDLE_FORMAT = "cope-studio.policy-bundle"
BUNDLE_FORMAT_VERSION = 1  # the newest this code reads; labeling.release.exports writes the same
MAX_BUNDLE_BYTES = 50 * 1024 * 1024


class BundleError(PolicyError):
    """The bundle cannot be imported; the message says why and nothing was written."""


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


def read_bundle(stream: IO[bytes] | IO[str]) -> dict[str, Any]:
    raw = stream.read(MAX_BUNDLE_BYTES + 1)
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleError(f"The bundle is larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MB.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"The file is not JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise BundleError("The file is JSON but not a policy bundle (expected an object).")
    return data


def _str(data: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BundleError(f"{where}: “{key}” must be text.")
    if len(value) > MAX_POLICY_CHARS:
        raise BundleError(f"{where}: “{key}” is longer than {MAX_POLICY_CHARS:,} characters.")
    return value


def _when(data: dict[str, Any], key: str, where: str) -> datetime | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    parsed = parse_datetime(str(value))
    if parsed is None:
        raise BundleError(f"{where}: “{key}” is not a date and time ({value!r}).")
    return parsed


def check_format(data: dict[str, Any]) -> None:
    if data.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"This is not a CoPE Studio policy bundle (format {data.get('format')!r}, "
            f"expected {BUNDLE_FORMAT!r})."
        )
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BundleError(f"The bundle's format_version {version!r} is not a positive integer.")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"This bundle is format version {version}, written by a newer CoPE Studio; this one "
            f"reads format versions up to {BUNDLE_FORMAT_VERSION}. Upgrade CoPE Studio to "
            "import it."
        )


def _user(username: str | None, fallback: Any) -> Any:
    if not username:
        return fallback
    User = get_user_model()
    user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
    if user is None:
        user = User(**{User.USERNAME_FIELD: username}, is_active=False)
        user.set_unusable_password()
        user.save()
    return user


def _parse_versions(data: dict[str, Any]) -> list[dict[str, Any]]:
    versions = data.get("versions")
    if not isinstance(versions, list) or not versions:
        raise BundleError("The bundle has no versions.")
    parsed = []
    for i, entry in enumerate(versions, start=1):
        where = f"Version entry {i}"
        if not isinstance(entry, dict):
            raise BundleError(f"{where} is not an object.")
        number = entry.get("number")
        if not isinstance(number, int) or number < 1:
            raise BundleError(f"{where}: “number” must be a positive integer.")
        where = f"Version {number}"
        origin = entry.get("twin_origin") or TwinOrigin.NONE
        if origin not in TwinOrigin.values:
            raise BundleError(f"{where}: unknown twin_origin {origin!r}.")
        text = _str(entry, "text", where)
        if not text.strip():
            raise BundleError(f"{where}: the policy text is empty.")
        parent = entry.get("parent_number")
        if parent is not None and (not isinstance(parent, int) or parent >= number):
            raise BundleError(f"{where}: parent_number must be an earlier version's number.")
        evidence = entry.get("finalize_evidence") or {}
        if not isinstance(evidence, dict):
            raise BundleError(f"{where}: finalize_evidence must be an object.")
        parsed.append(
            {
                "number": number,
                "parent_number": parent,
                "text": text,
                "twin_text": _str(entry, "twin_text", where, required=False),
                "twin_origin": origin,
                "twin_model": _str(entry, "twin_model", where, required=False)[:300],
                "twin_prompt": _str(entry, "twin_prompt", where, required=False),
                "twin_similarity": entry.get("twin_similarity") or {},
                "twin_warnings": list(entry.get("twin_warnings") or []),
                "twin_updated_at": _when(entry, "twin_updated_at", where),
                "change_note": _str(entry, "change_note", where, required=False),
                "author": entry.get("author"),
                "created_at": _when(entry, "created_at", where),
                "finalized_at": _when(entry, "finalized_at", where),
                "finalized_by": entry.get("finalized_by"),
                "finalize_override": _str(entry, "finalize_override", where, required=False),
                "finalize_evidence": evidence,
            }
        )
    numbers = [v["number"] for v in parsed]
    if len(set(numbers)) != len(numbers):
        raise BundleError("The bundle lists a version number twice.")
    return sorted(parsed, key=lambda v: v["number"])


def _same(version: Version, entry: dict[str, Any]) -> bool:
    return (
        version.text == entry["text"]
        and version.twin_text == entry["twin_text"]
        and (version.finalized_at is None) == (entry["finalized_at"] is None)
    )


def import_bundle(data: dict[str, Any], *, by: Any) -> ImportResult:
    """Recreate the bundle's policy and versions here (see the module docstring)."""
    check_format(data)
    policy_data = data.get("policy")
    if not isinstance(policy_data, dict):
        raise BundleError("The bundle has no policy.")
    name = " ".join(_str(policy_data, "name", "Policy").split())
    if not name:
        raise BundleError("Policy: the name is empty.")
    slug = slugify(_str(policy_data, "slug", "Policy"))[:SLUG_MAX_LENGTH]
    if not slug:
        raise BundleError("Policy: the slug is empty.")
    try:
        threshold = float(policy_data.get("agreement_threshold", 0.95))
        min_sample = int(policy_data.get("min_sample_size", 200))
    except (TypeError, ValueError) as exc:
        raise BundleError("Policy: threshold and minimum sample must be numbers.") from exc
    if not 0.5 <= threshold <= 1.0 or min_sample < 1:
        raise BundleError("Policy: threshold must be 0.5–1.0 and the minimum sample at least 1.")
    entries = _parse_versions(data)

    with transaction.atomic():
        policy = Policy.objects.select_for_update().filter(slug=slug).first()
        created_policy = policy is None
        if policy is None:
            if Policy.objects.filter(name=name).exists():
                raise BundleError(
                    f"A policy named “{name}” already exists here with another slug; rename "
                    "one of them before importing."
                )
            policy = Policy.objects.create(
                name=name,
                slug=slug,
                description=_str(policy_data, "description", "Policy", required=False),
                agreement_threshold=threshold,
                min_sample_size=min_sample,
                created_by=by,
            )
        existing = {v.number: v for v in policy.versions.all()}
        created = unchanged = 0
        for entry in entries:
            here = existing.get(entry["number"])
            if here is not None:
                if not _same(here, entry):
                    raise BundleError(
                        f"Version {entry['number']} of “{policy.name}” here differs from the "
                        "bundle's (text, twin or finalize state); nothing was imported."
                    )
                unchanged += 1
                continue
            parent = existing.get(entry["parent_number"]) if entry["parent_number"] else None
            version = Version.objects.create(
                policy=policy,
                number=entry["number"],
                text=entry["text"],
                twin_text=entry["twin_text"],
                twin_origin=entry["twin_origin"],
                twin_model=entry["twin_model"],
                twin_prompt=entry["twin_prompt"],
                twin_similarity=entry["twin_similarity"],
                twin_warnings=entry["twin_warnings"],
                twin_updated_at=entry["twin_updated_at"],
                change_note=entry["change_note"],
                author=_user(entry["author"], by),
                parent=parent,
                finalized_at=entry["finalized_at"],
                finalized_by=(
                    _user(entry["finalized_by"], by) if entry["finalized_at"] is not None else None
                ),
                finalize_override=entry["finalize_override"],
                finalize_evidence=entry["finalize_evidence"],
            )
            if entry["created_at"] is not None:  # auto_now_add ignores the value on create
                Version.objects.filter(pk=version.pk).update(created_at=entry["created_at"])
            existing[version.number] = version
            created += 1
    return ImportResult(
        policy=policy,
        created_policy=created_policy,
        versions_created=created,
        versions_unchanged=unchanged,
    )
