"""A finalized version is a record: no path (admin, a form, save(), update()) rewrites it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django import forms
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from policies import services
from policies.models import FrozenVersionError, Version
from tests.policies.conftest import make_version

EVIDENCE = {
    "evidence_version": 2,
    "job_id": 7,
    "agreement": {"n": 250, "p_o": 0.992, "kappa": 0.981, "ac1": 0.984, "kappa_note": ""},
    "gate": {"agreement_threshold": 0.95, "min_kappa": 0.6, "min_sample_size": 200},
    "sample_set": {"name": "Évaluation « set »", "item_count": 250},
    "override_reason": "",
}


@pytest.fixture
def finalized(version: Version, admin_user: Any) -> Version:
    Version.objects.filter(pk=version.pk).update(twin_warnings=["Label HA2 is missing in B."])
    return services.finalize_version(
        version=version, by=admin_user, override_reason="No GPU yet.", evidence=EVIDENCE
    )


def stored_record(version: Version) -> tuple[Any, ...]:
    """The frozen columns exactly as the database holds them (JSON as its stored text)."""
    meta = Version._meta
    columns = [
        f"CAST({meta.get_field(name).column} AS TEXT)"
        for name in ("finalize_evidence", "twin_warnings")
    ] + [
        meta.get_field(name).column
        for name in ("finalize_override", "text", "twin_text", "change_note", "finalized_by")
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)}, finalized_at FROM {meta.db_table} WHERE id = %s",
            [version.pk],
        )
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


class VersionRecordForm(forms.ModelForm[Version]):
    """Any form over a version's record (a future edit page, a script's form)."""

    class Meta:
        model = Version
        fields = ["finalize_override", "finalize_evidence", "twin_warnings", "change_note"]


def test_finalize_evidence_is_byte_identical_after_admin_form_and_save(
    finalized: Version, admin_user: Any
) -> None:
    before = stored_record(finalized)
    evidence_before = before[0]

    # 1. Django admin: a POST that tries to rewrite the reason, evidence and warnings.
    client = Client()
    client.force_login(admin_user)
    url = reverse("admin:policies_version_change", args=[finalized.pk])
    page = client.get(url).content.decode()
    for field in ("finalize_override", "finalize_evidence", "twin_warnings", "text"):
        assert f'name="{field}"' not in page, field  # shown read-only, never as an input
    refused = client.post(
        url,
        {
            "finalize_override": "Rewritten by someone else.",
            "finalize_evidence": '{"agreement": {"p_o": 1.0}}',
            "twin_warnings": "[]",
            "change_note": "rewritten",
        },
    )
    assert refused.status_code == 403

    # 2. A form over the record.
    form = VersionRecordForm(
        {
            "finalize_override": "Rewritten.",
            "finalize_evidence": '{"agreement": {"p_o": 1.0}}',
            "twin_warnings": "[]",
            "change_note": "rewritten",
        },
        instance=Version.objects.get(pk=finalized.pk),
    )
    assert not form.is_valid()
    assert "is finalized" in str(form.non_field_errors())
    with pytest.raises(ValueError):
        form.save()

    # 3. A plain save().
    version = Version.objects.get(pk=finalized.pk)
    version.finalize_evidence["agreement"]["p_o"] = 1.0
    with pytest.raises(FrozenVersionError, match="finalize_evidence cannot change"):
        version.save()

    after = stored_record(finalized)
    assert after[0] == evidence_before  # the evidence, byte for byte
    assert after == before  # and every other frozen column


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("finalize_override", "Another reason."),
        ("finalize_evidence", {}),
        ("twin_warnings", []),
        ("text", "# Rewritten\n"),
        ("twin_text", "# Rewritten twin\n"),
        ("change_note", "rewritten"),
        ("finalized_at", None),
    ],
)
def test_save_refuses_each_frozen_field(finalized: Version, field: str, value: Any) -> None:
    before = stored_record(finalized)
    version = Version.objects.get(pk=finalized.pk)
    setattr(version, field, value)

    with pytest.raises(FrozenVersionError, match="is finalized"):
        version.save()
    with pytest.raises(FrozenVersionError):
        version.save(update_fields=[field])

    assert stored_record(finalized) == before


def test_update_and_bulk_update_refuse_frozen_fields(finalized: Version) -> None:
    before = stored_record(finalized)

    with pytest.raises(FrozenVersionError, match="finalize_override"):
        Version.objects.filter(pk=finalized.pk).update(finalize_override="Rewritten.")
    with pytest.raises(FrozenVersionError):
        Version.objects.filter(policy=finalized.policy).update(finalize_evidence={})
    finalized.finalize_evidence = {}
    # bulk_update runs in an atomic block of its own: the refusal rolls back to this savepoint.
    with pytest.raises(FrozenVersionError), transaction.atomic():
        Version.objects.bulk_update([finalized], ["finalize_evidence"])

    assert stored_record(finalized) == before


def test_finalizing_twice_is_still_refused_and_changes_nothing(
    finalized: Version, admin_user: Any
) -> None:
    before = stored_record(finalized)
    with pytest.raises(services.AlreadyFinalized):
        services.finalize_version(version=finalized, by=admin_user, evidence={"forged": True})
    assert stored_record(finalized) == before


def test_a_draft_version_still_saves(
    version: Version, policy_text: str, twin_text: str, author: Any
) -> None:
    version.twin_warnings = ["A warning."]
    version.save()
    Version.objects.filter(pk=version.pk).update(change_note="Still a draft.")
    version.refresh_from_db()
    assert version.twin_warnings == ["A warning."] and version.change_note == "Still a draft."
    # Fields outside the record (the twin's provenance) stay writable on any version.
    v2 = make_version(version.policy, author, policy_text + "\n", twin_text)
    assert Version.objects.filter(pk=v2.pk).update(twin_model="m") == 1


def test_admin_shows_the_record_read_only(finalized: Version, admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("admin:policies_version_change", args=[finalized.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "No GPU yet." in html and "Évaluation" in html  # shown, as text
    assert "<textarea" not in html and 'name="_save"' not in html
    delete = client.post(
        reverse("admin:policies_version_delete", args=[finalized.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403 and Version.objects.filter(pk=finalized.pk).exists()


def test_an_imported_finalized_version_says_so_and_is_a_record_too(
    version: Version, author: Any
) -> None:
    Version.objects.filter(pk=version.pk).update(
        imported_from="<script>alert(1)</script> studio",
        imported_finalized_at=datetime(2026, 3, 4, 12, 0, tzinfo=UTC),
        imported_finalized_by="<b>someone</b>",
        imported_evidence={"agreement": {"p_o": 0.99}},
    )
    client = Client()
    client.force_login(author)
    html = client.get(version.get_absolute_url()).content.decode()
    note = html[html.index('id="imported-finalized"') :]
    note = note[: note.index("</p>")]
    assert "Imported as finalized from &lt;script&gt;alert(1)&lt;/script&gt; studio" in note
    assert "finalized there by &lt;b&gt;someone&lt;/b&gt; on 2026-03-04" in note
    assert "not finalized in this studio" in note and "<script>" not in html.split("</head>")[1]

    stored = Version.objects.get(pk=version.pk)
    stored.imported_evidence = {"agreement": {"p_o": 1.0}}
    with pytest.raises(FrozenVersionError, match="imported_evidence"):
        stored.save()


def test_this_studio_may_finalize_an_imported_version_once_on_its_own_evidence(
    version: Version, admin_user: Any
) -> None:
    Version.objects.filter(pk=version.pk).update(
        imported_from="Studio B",
        imported_finalized_at=datetime(2026, 3, 4, tzinfo=UTC),
        imported_finalized_by="bea",
        imported_evidence={"agreement": {"p_o": 0.99}},
    )
    with pytest.raises(FrozenVersionError, match="imported_evidence"):
        Version.objects.filter(pk=version.pk).update(imported_evidence={})
    with pytest.raises(FrozenVersionError, match="text"):
        Version.objects.filter(pk=version.pk).update(text="# Rewritten\n")

    finalized = services.finalize_version(version=version, by=admin_user, evidence=EVIDENCE)

    assert finalized.is_finalized and finalized.finalize_evidence == EVIDENCE
    assert finalized.imported_evidence == {"agreement": {"p_o": 0.99}}
    with pytest.raises(FrozenVersionError):
        Version.objects.filter(pk=version.pk).update(finalize_evidence={})
