"""Exports (Markdown, bundle, training JSONL, CSV), export/import commands, the round trip."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.models import Decision, GoldLabel, Item, Job, ReviewStatus, ReviewTask, SampleSet
from labeling.release import exports
from policies import services as policy_services
from policies.bundle import BundleError, import_bundle
from policies.models import Policy, Version, allow_record_deletion
from tests.labeling.conftest import LABELED_TEXTS as TEXTS
from tests.labeling.conftest import make_sample_set
from tests.labeling.release.test_freeze import real_version, run_job
from tests.policies.real_policies import SINGLE_LABEL_POLICY, SINGLE_LABEL_TWIN


@pytest.fixture
def finalized(
    author: Any, admin_user: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> Version:
    """v1 (draft, with a job) and v2 finalized on a frozen job, with gold on some items."""
    from labeling.release.finalize import finalize

    texts = [*TEXTS, '=HYPERLINK("http://evil")', "@SUM(1)"]
    sample_set = make_sample_set(author, texts)
    v1 = real_version(author, text=SINGLE_LABEL_POLICY, twin=SINGLE_LABEL_TWIN)
    run_job(v1, sample_set, author, sent, django_capture_on_commit_callbacks)
    v2 = real_version(author, text=SINGLE_LABEL_POLICY + "\n", twin=SINGLE_LABEL_TWIN)
    Version.objects.filter(pk=v2.pk).update(parent=v1)
    job = run_job(v2, sample_set, author, sent, django_capture_on_commit_callbacks)
    # Reviewers decided the two mismatches under v2: "borderline remark" is 1, "joke" is 0.
    for task in ReviewTask.objects.filter(job=job).select_related("item"):
        label = "1" if "remark" in task.item.text else "0"
        Decision.objects.create(task=task, reviewer=admin_user, label=label, wording="a")
        GoldLabel.objects.update_or_create(
            policy=v2.policy, item=task.item, defaults={"label": label, "decided_by": admin_user}
        )
    job.review_tasks.update(status=ReviewStatus.RESOLVED, resolved_at=timezone.now())
    # An import's expected label on an insult, and v1's reviewer saying the remark was 0.
    Item.objects.filter(sample_set=sample_set, text=TEXTS[0]).update(expected_label=1)
    v1_job = Job.objects.get(version=v1)
    remark = Item.objects.get(sample_set=sample_set, text=TEXTS[2])
    task = ReviewTask.objects.get(job=v1_job, item=remark)
    Decision.objects.create(task=task, reviewer=admin_user, label="0", wording="b")
    finalize(version=v2, by=admin_user)
    v2.refresh_from_db()
    return v2


def test_markdown_is_the_policy_byte_for_byte(finalized: Version, author: Any) -> None:
    client = Client()
    client.force_login(author)
    md = client.get(reverse("labeling:version_export", args=[finalized.pk, "md"]))
    assert md.status_code == 200 and md.content == finalized.text.encode()
    assert md["Content-Disposition"] == 'attachment; filename="regulated-goods-v2.md"'
    twin = client.get(reverse("labeling:version_export", args=[finalized.pk, "twin.md"]))
    assert twin.content == finalized.twin_text.encode()
    draft = finalized.policy.versions.get(number=1)
    refused = client.get(reverse("labeling:version_export", args=[draft.pk, "md"]))
    assert refused.status_code == 409 and b"not finalized" in refused.content


def test_bundle_carries_every_version_and_the_deciding_evidence(finalized: Version) -> None:
    data = exports.bundle(finalized.policy)
    assert data["format"] == "cope-studio.policy-bundle" and data["format_version"] == 1
    policy = data["policy"]
    assert policy["slug"] == "regulated-goods" and policy["min_sample_size"] == 5
    assert policy["evaluation_set"] == {"name": "Sample", "item_count": len(TEXTS) + 2}
    v1, v2 = data["versions"]
    assert v1["finalized_at"] is None and v1["finalize_evidence"] is None
    assert v2["text"] == finalized.text and v2["twin_text"] == finalized.twin_text
    assert v2["parent_number"] == 1 and v2["author"] == "ada_author"
    evidence = v2["finalize_evidence"]
    assert evidence["sample_set"]["name"] == "Sample" and evidence["items"] == len(TEXTS) + 2
    assert evidence["backend"] == "fake" and evidence["model_revision"] == "1"
    assert evidence["agreement"]["kappa"] is not None and evidence["agreement"]["ci_low"] < 1
    assert evidence["reviewed_mismatches"] == 2
    gold = evidence["gold"]
    # Gold: the remark (1, reviewer), the joke (0, reviewer), the insult (1, import).
    # Side A said 1, 1, 1: two right; side B said 0, 0, 1: two right.
    side_a = {k: gold["A"][k] for k in ("n", "tp", "fp", "fn", "tn")}
    side_b = {k: gold["B"][k] for k in ("n", "tp", "fp", "fn", "tn")}
    assert side_a == {"n": 3, "tp": 2, "fp": 1, "fn": 0, "tn": 0}
    assert side_b == {"n": 3, "tp": 1, "fp": 0, "fn": 1, "tn": 1}
    assert gold["A"]["precision"] == pytest.approx(2 / 3) and gold["A"]["recall"] == 1.0
    assert "fewer than 30" in gold["note"]


def test_items_hash_depends_on_contents_not_ids(finalized: Version, author: Any) -> None:
    job = Job.objects.get(version=finalized, frozen_at__isnull=False)
    assert exports.items_sha256(job) == finalized.finalize_evidence["items_sha256"]
    Item.objects.filter(pk=Item.objects.first().pk).update(content_hash="0" * 64)
    assert exports.items_sha256(job) != finalized.finalize_evidence["items_sha256"]


def test_training_jsonl_keeps_contradicting_rows_and_counts_them(finalized: Version) -> None:
    summary = exports.TrainingSummary()
    rows = [json.loads(line) for line in exports.iter_training_jsonl(finalized.policy, summary)]
    assert all(set(row) == {"policy", "content", "label"} for row in rows)
    remark = [r for r in rows if r["content"] == TEXTS[2]]
    assert sorted((r["policy"] == finalized.text, r["label"]) for r in remark) == [
        (False, "0"),  # v1's reviewer
        (True, "1"),  # v2's reviewer
    ]
    assert summary.contradictory_contents == 1
    assert summary.rows == len(rows) == 6  # per version: insult (import), remark, joke
    assert summary.by_label == {"0": 3, "1": 3}


def test_csv_of_the_deciding_job_streams_and_defuses_formulas(
    finalized: Version, author: Any
) -> None:
    client = Client()
    client.force_login(author)
    response = client.get(reverse("labeling:version_export", args=[finalized.pk, "csv"]))
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert (
        rows[0][:4] == ["item_id", "external_id", "text", "label_a"] and len(rows) == len(TEXTS) + 3
    )
    column = {name: i for i, name in enumerate(rows[0])}
    contents = [r[column["text"]] for r in rows[1:]]
    assert '\'=HYPERLINK("http://evil")' in contents and "'@SUM(1)" in contents
    remark = next(r for r in rows if r[column["text"]] == TEXTS[2])
    shown = [remark[column[c]] for c in ("label_a", "p1_a", "label_b", "p1_b", "gold")]
    assert shown == ["1", "0.6", "0", "0.4", "1"] and remark[column["decision"]] == "1"


def test_export_policy_command_writes_each_format(finalized: Version, tmp_path: Path) -> None:
    md = tmp_path / "p.md"
    call_command("export_policy", "regulated-goods", "--format", "md", "--twin", "-o", str(md))
    assert md.read_bytes() == finalized.text.encode()
    assert (tmp_path / "p.twin.md").read_bytes() == finalized.twin_text.encode()
    out = io.StringIO()
    call_command("export_policy", "regulated-goods", "--format", "md", stdout=out)
    jsonl = tmp_path / "t.jsonl"
    call_command("export_policy", "regulated-goods", "--format", "jsonl", "-o", str(jsonl))
    assert len(jsonl.read_text().splitlines()) == 6
    summary = json.loads((tmp_path / "t.jsonl.summary.json").read_text())
    assert summary["contradictory_pairs"] == 1
    with pytest.raises(CommandError, match="not finalized"):
        call_command("export_policy", "regulated-goods", "--version", "1", "--format", "md")
    with pytest.raises(CommandError, match="No policy with the slug"):
        call_command("export_policy", "nope", "--format", "json")


def test_bundle_round_trip_into_a_fresh_instance(
    finalized: Version, tmp_path: Path, admin_user: Any
) -> None:
    path = tmp_path / "bundle.json"
    call_command("export_policy", "regulated-goods", "--format", "json", "-o", str(path))
    original = json.loads(path.read_text())
    # A fresh instance: no policy, no jobs, no authors of the history (finalized records are
    # kept on every path, so the wipe says it means it).
    with allow_record_deletion():
        Job.objects.all().delete()
        SampleSet.objects.all().delete()
        Policy.objects.all().delete()
    User.objects.filter(username="ada_author").delete()

    out = io.StringIO()
    call_command("import_policy", str(path), "--user", admin_user.username, stdout=out)
    assert "Created" in out.getvalue()
    policy = Policy.objects.get(slug="regulated-goods")
    v1, v2 = policy.versions.order_by("number")
    assert v2.parent == v1 and v2.text == finalized.text
    assert v2.author.username == "ada_author" and not v2.author.is_active
    assert v2.created_at == finalized.created_at
    # Finalized there, not here: the source's finalize is kept apart, as imported.
    assert not v2.is_finalized and v2.imported_from == "the file bundle.json"
    assert v2.imported_finalized_at == finalized.finalized_at
    assert v2.imported_finalized_by == admin_user.username
    assert v2.imported_evidence == finalized.finalize_evidence
    again = exports.bundle(policy)
    finalize_keys = (
        "finalized_at", "finalized_by", "finalize_override", "finalize_evidence", "imported",
    )  # fmt: skip
    for here, there in zip(again["versions"], original["versions"], strict=True):
        assert {k: v for k, v in here.items() if k not in finalize_keys} == {
            k: v for k, v in there.items() if k not in finalize_keys
        }
        assert here["finalized_at"] is None and there["imported"] is None
    assert again["versions"][1]["imported"] == {
        "from": "the file bundle.json",
        "finalized_at": original["versions"][1]["finalized_at"],
        "finalized_by": admin_user.username,
        "evidence": original["versions"][1]["finalize_evidence"],
    }
    assert {
        k: v for k, v in again["policy"].items() if k not in ("evaluation_set", "created_at")
    } == {k: v for k, v in original["policy"].items() if k not in ("evaluation_set", "created_at")}

    # Twice: nothing changes.
    out = io.StringIO()
    call_command("import_policy", str(path), "--user", admin_user.username, stdout=out)
    assert "Nothing changed" in out.getvalue()
    assert Version.objects.count() == 2 and Policy.objects.count() == 1


def test_import_refuses_a_newer_format_and_a_conflict(finalized: Version, admin_user: Any) -> None:
    data = exports.bundle(finalized.policy)
    newer = {**data, "format_version": 2}
    with pytest.raises(BundleError, match="format version 2, written by a newer CoPE Studio"):
        import_bundle(newer, by=admin_user, source="test")
    changed = json.loads(json.dumps(data))
    changed["versions"][0]["text"] += "changed"
    changed["versions"].append({**changed["versions"][1], "number": 3, "parent_number": 2})
    with pytest.raises(BundleError, match="Version 1 .* differs"):
        import_bundle(changed, by=admin_user, source="test")
    assert finalized.policy.versions.count() == 2  # nothing written
    with pytest.raises(BundleError, match="not a CoPE Studio policy bundle"):
        import_bundle({"format": "x"}, by=admin_user, source="test")


def test_import_form_is_for_admins_and_says_what_went_wrong(
    finalized: Version, admin_user: Any, author: Any
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    raw = "".join(exports.iter_bundle(finalized.policy)).encode()
    client = Client()
    client.force_login(author)
    assert client.get(reverse("policies:import")).status_code == 403
    client.force_login(admin_user)
    ok = client.post(
        reverse("policies:import"), {"bundle": SimpleUploadedFile("b.json", raw)}, follow=True
    )
    assert "Nothing changed" in ok.content.decode()
    bad = client.post(
        reverse("policies:import"), {"bundle": SimpleUploadedFile("b.json", b"{nope")}
    )
    assert bad.status_code == 422 and "The file is not JSON" in bad.content.decode()


def test_bundle_and_jsonl_downloads_stream(finalized: Version, author: Any) -> None:
    client = Client()
    client.force_login(author)
    bundle = client.get(reverse("labeling:policy_export", args=[finalized.policy_id, "json"]))
    assert bundle.streaming
    data = json.loads(b"".join(bundle.streaming_content))
    assert data["versions"][1]["finalize_evidence"]["job_id"]
    jsonl = client.get(reverse("labeling:policy_export", args=[finalized.policy_id, "jsonl"]))
    assert jsonl.streaming and len(b"".join(jsonl.streaming_content).splitlines()) == 6
    page = client.get(finalized.get_absolute_url()).content.decode()
    assert reverse("labeling:version_export", args=[finalized.pk, "csv"]) in page


def test_override_reason_is_shown_on_the_version_and_exported(
    author: Any, admin_user: Any, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    from labeling.release.finalize import finalize

    version = real_version(author, text=SINGLE_LABEL_POLICY, twin=SINGLE_LABEL_TWIN)
    job = run_job(
        version, make_sample_set(author, TEXTS), author, sent, django_capture_on_commit_callbacks
    )
    Job.objects.filter(pk=job.pk).update(backend="embedding")
    job.review_tasks.update(status=ReviewStatus.RESOLVED, resolved_at=timezone.now())
    finalize(version=version, by=admin_user, override_reason="No GPU yet.")
    client = Client()
    client.force_login(author)
    page = client.get(version.get_absolute_url()).content.decode()
    assert "No GPU yet." in page
    assert exports.bundle(version.policy)["versions"][0]["finalize_override"] == "No GPU yet."
    assert policy_services  # imported for the fixture chain
