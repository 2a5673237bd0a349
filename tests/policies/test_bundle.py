"""Importing a policy bundle: it never forges this studio's record, and hostile files are refused
with the field named and nothing written (service, upload page, import_policy)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.bundle import (
    BUNDLE_FORMAT,
    BundleError,
    FinalizedAs,
    import_bundle,
    read_bundle,
)
from policies.models import Policy, Version
from tests.conftest import POLICY_TEXT, TWIN_TEXT
from tests.policies.conftest import make_policy, make_version

FINALIZED_AT = "2026-03-02T10:15:00+00:00"
EVIDENCE = {
    "evidence_version": 1,
    "job_id": 41,
    "items": 400,
    "agreement": {"n": 400, "p_o": 0.99, "kappa": 0.97},  # the file's word, not this studio's
    "override_reason": "",
}


def make_bundle(slug: str = "harassment", name: str = "Harassment") -> dict[str, Any]:
    """A bundle as ``labeling.release.exports.iter_bundle`` writes it: v1 draft, v2 finalized."""
    version = {
        "number": 1,
        "parent_number": None,
        "text": POLICY_TEXT,
        "twin_text": TWIN_TEXT,
        "twin_origin": "hand",
        "twin_model": "",
        "twin_prompt": "",
        "twin_similarity": {"changed_words": 0.4},
        "twin_warnings": [],
        "twin_updated_at": "2026-03-01T09:00:00+00:00",
        "change_note": "",
        "author": "ada_author",
        "created_at": "2026-03-01T09:00:00+00:00",
        "finalized_at": None,
        "finalized_by": None,
        "finalize_override": "",
        "finalize_evidence": None,
    }
    finalized = {
        **version,
        "number": 2,
        "parent_number": 1,
        "text": POLICY_TEXT + "\n",
        "change_note": "Trailing newline.",
        "created_at": "2026-03-02T09:00:00+00:00",
        "finalized_at": FINALIZED_AT,
        "finalized_by": "mallory_elsewhere",
        "finalize_evidence": EVIDENCE,
    }
    return {
        "format": BUNDLE_FORMAT,
        "format_version": 1,
        "exported_at": "2026-03-03T00:00:00+00:00",
        "policy": {
            "name": name,
            "slug": slug,
            "description": "Abuse aimed at a person.",
            "agreement_threshold": 0.9,
            "min_sample_size": 300,
            "evaluation_set": None,
            "created_at": "2026-03-01T08:00:00+00:00",
        },
        "versions": [version, finalized],
    }


def _raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def _import(data: dict[str, Any], by: Any, **options: Any) -> Any:
    options.setdefault("source", "Studio North")
    return import_bundle(read_bundle(io.BytesIO(_raw(data))), by=by, **options)


def _counts() -> tuple[int, int, int]:
    return Policy.objects.count(), Version.objects.count(), User.objects.count()


# --- no forged history -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_finalized_version_arrives_as_imported_finalized_never_as_this_studios(
    admin_user: Any, author: Any
) -> None:
    users = User.objects.count()
    result = _import(make_bundle(), admin_user)
    assert result.created_policy and result.versions_created == 2
    v1, v2 = Version.objects.filter(policy=result.policy).order_by("number")
    assert v2.finalized_at is None and v2.finalized_by is None and not v2.is_finalized
    assert v2.finalize_evidence == {} and v2.finalize_override == ""
    assert v2.imported_finalized_at is not None
    assert v2.imported_finalized_at.isoformat() == FINALIZED_AT
    assert v2.imported_finalized_by == "mallory_elsewhere"
    assert v2.imported_evidence == EVIDENCE
    assert v1.imported_from == v2.imported_from == "Studio North"
    assert v1.imported_finalized_at is None and v1.imported_evidence == {}
    # The file's finalizer is a name, never a local account (none is created for it).
    assert not User.objects.filter(username="mallory_elsewhere").exists()
    assert User.objects.count() == users
    assert v2.author == author and v2.parent == v1


@pytest.mark.django_db
def test_a_finalizer_who_has_an_account_here_is_still_only_a_name(admin_user: Any) -> None:
    bundle = make_bundle()
    bundle["versions"][1]["finalized_by"] = admin_user.username
    v2 = _import(bundle, admin_user).policy.versions.get(number=2)
    assert v2.finalized_by is None and v2.imported_finalized_by == admin_user.username


@pytest.mark.django_db
def test_drafts_mode_keeps_no_finalize_record(admin_user: Any) -> None:
    policy = _import(make_bundle(), admin_user, finalized_as=FinalizedAs.DRAFT).policy
    v2 = policy.versions.get(number=2)
    assert not v2.is_finalized and v2.imported_finalized_at is None
    assert v2.imported_finalized_by == "" and v2.imported_evidence == {}
    assert v2.imported_from == "Studio North"


@pytest.mark.django_db
def test_the_api_does_not_serve_an_imported_finalized_version(admin_user: Any) -> None:
    from labeling.api import keys as api_keys

    _import(make_bundle(), admin_user)
    secret = api_keys.create_key(
        owner=admin_user, name="svc", scopes=["read", "label"], by=admin_user
    ).secret
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    client = Client()
    policy = client.get("/api/v1/policies/harassment", **auth).json()
    assert policy["latest_version"] == 2 and policy["finalized_version"] is None
    versions = client.get("/api/v1/policies/harassment/versions", **auth).json()
    assert [v["finalized"] for v in versions["items"]] == [False, False]
    label = client.post(
        "/api/v1/label",
        data=json.dumps({"policy": "harassment", "content": "hello"}),
        content_type="application/json",
        **auth,
    )
    assert label.status_code == 409 and label.json()["code"] == "not_finalized"


@pytest.mark.django_db
def test_a_bundle_adds_nothing_to_an_existing_policy_unless_asked(
    admin_user: Any, author: Any
) -> None:
    policy = make_policy(author)  # "Harassment", slug "harassment"
    make_version(policy, author, POLICY_TEXT, TWIN_TEXT)
    before = _counts()
    with pytest.raises(BundleError, match="already here.*v2.*only when you choose"):
        _import(make_bundle(), admin_user)
    assert _counts() == before

    result = _import(make_bundle(), admin_user, add_to_existing=True)
    assert not result.created_policy and (result.versions_created, result.versions_unchanged) == (
        1,
        1,
    )
    v1, v2 = policy.versions.order_by("number")
    assert v1.imported_from == "" and v2.imported_from == "Studio North"
    assert not v2.is_finalized and v2.imported_finalized_by == "mallory_elsewhere"
    # Twice: nothing to add, nothing refused.
    again = _import(make_bundle(), admin_user)
    assert not again.changed and "Nothing changed" in again.summary()


@pytest.mark.django_db
def test_a_full_width_slug_is_the_existing_policy(admin_user: Any, author: Any) -> None:
    make_policy(author)
    bundle = make_bundle(slug="ｈａｒａｓｓｍｅｎｔ", name="Ｈａｒａｓｓｍｅｎｔ, elsewhere")
    before = _counts()
    with pytest.raises(BundleError, match="slug “harassment” is already here"):
        _import(bundle, admin_user)
    assert _counts() == before
    result = _import(bundle, admin_user, add_to_existing=True)
    assert result.policy.slug == "harassment" and Policy.objects.count() == 1


# --- hostile bundles ---------------------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = make_bundle()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def _deep(depth: int) -> bytes:
    data = _raw(_set(("versions", 1, "finalize_evidence"), {"x": 0}))
    return data.replace(b'{"x": 0}', b'{"x": ' + b"[" * depth + b"]" * depth + b"}")


HOSTILE: list[tuple[str, bytes, str]] = [
    ("nested 100,000 deep", _deep(100_000), "nests lists or objects far deeper"),
    ("nested 40 deep in evidence", _deep(40), "nests lists or objects more than 32 deep"),
    ("version number 2^63", _raw(_set(("versions", 1, "number"), 2**63)), "entry 2: “number”"),
    ("negative number", _raw(_set(("versions", 0, "number"), -1)), "entry 1: “number”"),
    ("parent 2^63", _raw(_set(("versions", 1, "parent_number"), 2**63)), "“parent_number”"),
    ("min sample 2^63", _raw(_set(("policy", "min_sample_size"), 2**63)), "“min_sample_size”"),
    ("negative sample", _raw(_set(("policy", "min_sample_size"), -5)), "“min_sample_size”"),
    ("sample as text", _raw(_set(("policy", "min_sample_size"), "200")), "“min_sample_size”"),
    ("threshold true", _raw(_set(("policy", "agreement_threshold"), True)), "“agreement_thre"),
    ("threshold NaN", _raw(make_bundle()).replace(b"0.9", b"NaN"), "NaN"),
    (
        "impossible date",
        _raw(_set(("versions", 0, "created_at"), "2025-02-30T10:00:00Z")),
        "“created_at”",
    ),  # fmt: skip
    (
        "date out of range",
        _raw(_set(("versions", 1, "finalized_at"), "9999-12-31T23:00:00-05:00")),
        "“finalized_at”",
    ),  # fmt: skip
    ("date as number", _raw(_set(("versions", 0, "twin_updated_at"), 5)), "“twin_updated_at”"),
    (
        "twin_warnings 5",
        _raw(_set(("versions", 0, "twin_warnings"), 5)),
        "“twin_warnings” must be",
    ),  # fmt: skip
    (
        "twin_warnings 0",
        _raw(_set(("versions", 0, "twin_warnings"), 0)),
        "“twin_warnings” must be",
    ),  # fmt: skip
    (
        "evidence list",
        _raw(_set(("versions", 1, "finalize_evidence"), [1])),
        "“finalize_evidence”",
    ),  # fmt: skip
    (
        "similarity text",
        _raw(_set(("versions", 0, "twin_similarity"), "x")),
        "“twin_similarity”",
    ),  # fmt: skip
    ("text a number", _raw(_set(("versions", 0, "text"), 7)), "Version 1: “text” must be text"),
    ("text with NUL", _raw(_set(("versions", 0, "text"), "a\x00b")), "“text” holds a NUL"),
    (
        "lone surrogate",
        _raw(_set(("versions", 0, "change_note"), "\ud800")),
        "“change_note” holds",
    ),  # fmt: skip
    ("author a list", _raw(_set(("versions", 0, "author"), ["x"])), "“author” must be text"),
    ("author too long", _raw(_set(("versions", 0, "author"), "a" * 151)), "“author” is longer"),
    (
        "author not a username",
        _raw(_set(("versions", 0, "author"), "<b>x</b>")),
        "“author” '<b>x</b>': Enter a valid username",
    ),  # fmt: skip
    ("origin a dict", _raw(_set(("versions", 0, "twin_origin"), {})), "“twin_origin”"),
    (
        "name with RLO",
        _raw(_set(("policy", "name"), "Harass\u202ement")),
        "“name”: Names cannot",
    ),  # fmt: skip
    ("name too long", _raw(_set(("policy", "name"), "n" * 201)), "“name” is longer"),
    ("slug a number", _raw(_set(("policy", "slug"), 3)), "“slug” must be text"),
    ("format_version true", _raw(_set(("format_version",), True)), "“format_version”"),
    ("versions an object", _raw(_set(("versions",), {})), "no “versions”"),
    ("policy a list", _raw(_set(("policy",), [])), "no “policy”"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "raw", "message"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_bundles_are_refused_naming_the_field(
    case: str, raw: bytes, message: str, admin_user: Any
) -> None:
    before = _counts()
    with pytest.raises(BundleError) as caught:
        import_bundle(read_bundle(io.BytesIO(raw)), by=admin_user, source="Studio North")
    assert message in str(caught.value)
    assert _counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "raw", "message"), [HOSTILE[0], HOSTILE[2], HOSTILE[10], HOSTILE[13]]
)
def test_import_policy_command_answers_one_line_for_a_hostile_bundle(
    case: str, raw: bytes, message: str, admin_user: Any, tmp_path: Path
) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(raw)
    before = _counts()
    with pytest.raises(CommandError) as caught:
        call_command("import_policy", str(path), "--user", admin_user.username)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert _counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "raw", "message"), [HOSTILE[0], HOSTILE[5], HOSTILE[10], HOSTILE[13]]
)
def test_import_page_answers_422_with_the_form_and_the_field(
    case: str, raw: bytes, message: str, admin_user: Any
) -> None:
    client = Client()
    client.force_login(admin_user)
    before = _counts()
    response = client.post(
        reverse("policies:import"), {"bundle": SimpleUploadedFile("b.json", raw)}
    )
    page = response.content.decode()
    assert response.status_code == 422
    assert "Nothing was imported" in page and 'name="bundle"' in page
    assert escape(message) in page
    assert _counts() == before


# --- the import page and command ---------------------------------------------------------------


@pytest.mark.django_db
def test_import_page_asks_before_adding_to_an_existing_policy(admin_user: Any, author: Any) -> None:
    policy = make_policy(author)
    make_version(policy, author, POLICY_TEXT, TWIN_TEXT)
    client = Client()
    client.force_login(admin_user)
    url = reverse("policies:import")
    page = client.get(url).content.decode()
    assert 'name="add_to_existing"' in page and 'value="draft"' in page

    def post(**extra: Any) -> Any:
        upload = SimpleUploadedFile("north.json", _raw(make_bundle()))
        return client.post(url, {"bundle": upload, "finalized_as": "imported", **extra})

    refused = post()
    assert refused.status_code == 422 and "only when you choose" in refused.content.decode()
    assert policy.versions.count() == 1
    added = post(add_to_existing="on", source="Studio North", finalized_as="draft")
    assert added.status_code == 302 and added["Location"] == policy.get_absolute_url()
    v2 = policy.versions.get(number=2)
    assert v2.imported_from == "Studio North" and v2.imported_finalized_at is None


@pytest.mark.django_db
def test_import_page_names_the_file_when_no_source_is_given(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    upload = SimpleUploadedFile("north.json", _raw(make_bundle()))
    response = client.post(
        reverse("policies:import"), {"bundle": upload, "finalized_as": "imported"}
    )
    assert response.status_code == 302
    assert Version.objects.get(number=2).imported_from == "the file north.json"
    bad = client.post(
        reverse("policies:import"),
        {
            "bundle": SimpleUploadedFile("n.json", _raw(make_bundle())),
            "finalized_as": "imported",
            "source": "North\u202eStudio",
        },
    )
    assert bad.status_code == 422 and "U+202E" in bad.content.decode()


@pytest.mark.django_db
def test_import_policy_flags(admin_user: Any, author: Any, tmp_path: Path) -> None:
    policy = make_policy(author)
    make_version(policy, author, POLICY_TEXT, TWIN_TEXT)
    path = tmp_path / "north.json"
    path.write_bytes(_raw(make_bundle()))
    with pytest.raises(CommandError, match="--add-to-existing"):
        call_command("import_policy", str(path), "--user", admin_user.username)
    out = io.StringIO()
    call_command(
        "import_policy",
        str(path),
        "--user",
        admin_user.username,
        "--add-to-existing",
        "--finalized-as",
        "imported",
        stdout=out,
    )
    assert "Updated" in out.getvalue()
    v2 = policy.versions.get(number=2)
    assert v2.imported_from == "the file north.json" and not v2.is_finalized
    assert v2.imported_finalized_by == "mallory_elsewhere"


# --- property: any hostile field is a clear error or a clean import ----------------------------

_FIELDS = [
    ("format_version",),
    ("policy", "name"),
    ("policy", "slug"),
    ("policy", "description"),
    ("policy", "agreement_threshold"),
    ("policy", "min_sample_size"),
    ("policy", "min_kappa"),
    *[
        ("versions", i, key)
        for i in (0, 1)
        for key in (
            "number",
            "parent_number",
            "text",
            "twin_text",
            "twin_origin",
            "twin_model",
            "twin_similarity",
            "twin_warnings",
            "twin_updated_at",
            "change_note",
            "author",
            "created_at",
            "finalized_at",
            "finalized_by",
            "finalize_override",
            "finalize_evidence",
        )
    ],
]
_HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\ud800",
        "a\u202eb",
        "2025-02-30T10:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+05:00",
        "ｈａｒａｓｓｍｅｎｔ",
        "<script>alert(1)</script>",
        "x" * 201,
        "hand",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 2**31 - 1, 2**31, 2**63, -1, 0.5, 1.5, -0.0, 1e308]),
    st.floats(allow_nan=False, allow_infinity=False),
    _HOSTILE_TEXT,
    st.text(max_size=30),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutations=st.lists(st.tuples(st.sampled_from(_FIELDS), _VALUES), min_size=1, max_size=3),
    add_to_existing=st.booleans(),
)
def test_any_hostile_field_is_a_clear_error_or_a_clean_import(
    admin_user: Any, mutations: list[tuple[tuple[Any, ...], Any]], add_to_existing: bool
) -> None:
    data = make_bundle()
    for path, value in mutations:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = copy.deepcopy(value)
    raw = json.dumps(data).encode()
    with transaction.atomic():
        before = _counts()
        try:
            result = import_bundle(
                read_bundle(io.BytesIO(raw)),
                by=admin_user,
                source="Studio North",
                add_to_existing=add_to_existing,
            )
        except BundleError as exc:
            assert str(exc) and "Traceback" not in str(exc)
            assert _counts() == before
        else:
            # A clean import: nothing it added is finalized here.
            assert not result.policy.versions.filter(finalized_at__isnull=False).exists()
            assert Version.objects.filter(policy=result.policy).count() >= 1
        transaction.set_rollback(True)
