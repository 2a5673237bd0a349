"""The three roles of CoPE Studio as Django groups with model permissions.

- author: writes policies and versions, imports sample sets, runs jobs.
- reviewer: reviews mismatches (records decisions and gold labels); cannot edit policies.
- lead: a reviewer who also adjudicates mismatches whose reviewers disagree (overlap above 1).
- admin: everything an author, a reviewer and a lead can do, plus finalizing versions.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

AUTHOR, REVIEWER, LEAD, ADMIN = "author", "reviewer", "lead", "admin"

_VIEW = [
    "policies.view_policy",
    "policies.view_version",
    "policies.view_twinjob",
    "labeling.view_sampleset",
    "labeling.view_item",
    "labeling.view_job",
    "labeling.view_label",
    "labeling.view_reviewtask",
    "labeling.view_decision",
    "labeling.view_goldlabel",
]
_AUTHOR = [
    "policies.add_policy",
    "policies.change_policy",
    "policies.add_version",
    "policies.change_version",
    "policies.add_twinjob",
    "labeling.add_sampleset",
    "labeling.add_job",
    "labeling.change_job",
]
_REVIEWER = ["labeling.add_decision", "labeling.add_goldlabel", "labeling.change_reviewtask"]
_LEAD = ["labeling.adjudicate_reviewtask"]
_ADMIN = [
    "policies.finalize_version",
    "policies.delete_policy",
    "labeling.delete_sampleset",
    "labeling.change_policyevaluation",  # Threshold, minimum sample, evaluation set
    "labeling.change_decision",  # Correct any reviewer's decision (reviewers: their own only)
    "labeling.change_policywebhook",  # A policy's webhook and its delivery log
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    AUTHOR: _VIEW + _AUTHOR,
    REVIEWER: _VIEW + _REVIEWER,
    LEAD: _VIEW + _REVIEWER + _LEAD,
    ADMIN: _VIEW + _AUTHOR + _REVIEWER + _LEAD + _ADMIN,
}


def ensure_roles(**_: Any) -> None:
    """Create the role groups and give them their permissions (idempotent)."""
    for role, codes in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=role)
        perms = []
        for code in codes:
            app_label, codename = code.split(".")
            perm = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is not None:
                perms.append(perm)
        group.permissions.set(perms)
