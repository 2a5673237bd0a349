"""The export of a finalized version: what a platform takes away to run CoPE itself.

Only a finalized version is exported as final. The JSON carries the policy text exactly as CoPE
must receive it in the POLICY slot, the twin for reference, and the version's provenance.
"""

from __future__ import annotations

from typing import Any

from django.utils.text import slugify

from policies.models import Version

EXPORT_FORMAT = "cope-studio.policy-version/1"


class NotFinalized(Exception):
    pass


def export_version(version: Version) -> dict[str, Any]:
    if not version.is_finalized:
        raise NotFinalized(
            f"{version} is not finalized: only a finalized version can be exported as final."
        )
    assert version.finalized_at is not None
    return {
        "format": EXPORT_FORMAT,
        "policy": {
            "id": version.policy_id,
            "name": version.policy.name,
            "agreement_threshold": version.policy.agreement_threshold,
            "min_sample_size": version.policy.min_sample_size,
        },
        "version": {
            "number": version.number,
            "created_at": version.created_at.isoformat(),
            "author": version.author.get_username(),
            "change_note": version.change_note,
            "finalized_at": version.finalized_at.isoformat(),
            "finalized_by": version.finalized_by.get_username() if version.finalized_by else "",
            "parent_number": version.parent.number if version.parent else None,
        },
        "text": version.text,
        "twin": {
            "text": version.twin_text,
            "origin": version.twin_origin,
            "model": version.twin_model,
        },
    }


def export_filename(version: Version, extension: str) -> str:
    return f"{slugify(version.policy.name) or 'policy'}-v{version.number}.{extension}"
