"""``manage.py seed_demo`` and the demo policies and samples it loads."""

from __future__ import annotations

import csv
import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from labeling.management.commands.seed_demo import DEFAULT_PASSWORD, DEMO_POLICIES, DemoPolicy
from labeling.models import Item, SampleSet
from policies.models import Policy, TwinOrigin, Version
from policies.roles import ADMIN, AUTHOR, REVIEWER
from worker.policy_text import missing_sections, parse_policy, twin_problems

# Words that make CoPE guess at a speaker's state of mind instead of reading the content.
INTENT_WORDS = (
    "intend",
    "intent",
    "meant to",
    "trying to",
    "tries to",
    "in order to",
    "purpose",
    "deliberate",
)
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_TERM = re.compile(r"^\s*[-*]\s+\*\*(.+?)\*\*\s*:", re.MULTILINE)

_IDS = [demo.slug for demo in DEMO_POLICIES]


def _seed(**options: Any) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def _snapshot() -> dict[str, Any]:
    user_model = get_user_model()
    return {
        "users": sorted(
            user_model.objects.values_list("pk", "username", "password", "is_staff", "is_superuser")
        ),
        "groups": sorted(user_model.groups.through.objects.values_list("user_id", "group_id")),
        "policies": sorted(Policy.objects.values_list("pk", "name", "updated_at")),
        "versions": sorted(Version.objects.values_list("pk", "policy_id", "number", "twin_text")),
        "sample_sets": sorted(SampleSet.objects.values_list("pk", "name", "item_count")),
        "items": Item.objects.count(),
    }


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, title
    return match.group(1)


@pytest.mark.django_db
def test_seed_creates_users_policies_and_sample_sets() -> None:
    output = _seed()

    user_model = get_user_model()
    roles = {"demo-author": AUTHOR, "demo-reviewer": REVIEWER, "demo-admin": ADMIN}
    for username, role in roles.items():
        user = user_model.objects.get(username=username)
        assert list(user.groups.values_list("name", flat=True)) == [role]
        assert authenticate(username=username, password=DEFAULT_PASSWORD) == user
    admin = user_model.objects.get(username="demo-admin")
    assert admin.is_staff and admin.is_superuser
    assert not user_model.objects.get(username="demo-author").is_staff
    assert DEFAULT_PASSWORD in output

    assert Policy.objects.count() == len(DEMO_POLICIES) == 3
    for demo in DEMO_POLICIES:
        version = Version.objects.get(policy__name=demo.name)
        assert version.number == 1
        assert version.text == demo.text_path.read_text(encoding="utf-8")
        assert version.twin_text == demo.twin_path.read_text(encoding="utf-8")
        assert version.twin_origin == TwinOrigin.HAND
        assert version.author.username == "demo-author"

        sample_set = SampleSet.objects.get(name=demo.sample_set_name)
        assert sample_set.item_count == sample_set.items.count() == 300
        assert sample_set.report["duplicates"]["items"] == 0
        assert sample_set.report["invalid_labels"]["count"] == 0
        assert sample_set.items.filter(expected_label__isnull=True).count() == 0
        with demo.samples_path.open(encoding="utf-8", newline="") as fh:
            expected = {row["id"]: int(row["expected_label"]) for row in csv.DictReader(fh)}
        assert dict(sample_set.items.values_list("external_id", "expected_label")) == expected


@pytest.mark.django_db
def test_seed_twice_changes_nothing() -> None:
    _seed()
    before = _snapshot()

    output = _seed(password="something-else")

    assert _snapshot() == before
    assert "something-else" not in output
    assert "exists; left as it is" in output


@pytest.mark.django_db
def test_password_option_sets_new_users_password() -> None:
    _seed(password="s3cret-demo")

    assert authenticate(username="demo-reviewer", password="s3cret-demo") is not None
    assert authenticate(username="demo-reviewer", password=DEFAULT_PASSWORD) is None


@pytest.mark.django_db
def test_existing_policy_of_the_same_name_is_left_alone(author: Any) -> None:
    Policy.objects.create(name=DEMO_POLICIES[0].name, created_by=author)

    _seed()

    assert not Version.objects.filter(policy__name=DEMO_POLICIES[0].name).exists()
    assert Version.objects.count() == len(DEMO_POLICIES) - 1


@pytest.mark.parametrize("demo", DEMO_POLICIES, ids=_IDS)
def test_demo_twin_is_a_structural_twin(demo: DemoPolicy) -> None:
    text = demo.text_path.read_text(encoding="utf-8")
    twin = demo.twin_path.read_text(encoding="utf-8")

    assert twin_problems(text, twin) == []


@pytest.mark.parametrize("demo", DEMO_POLICIES, ids=_IDS)
@pytest.mark.parametrize("twin", [False, True], ids=["text", "twin"])
def test_demo_policy_parses_with_sections_and_labels(demo: DemoPolicy, twin: bool) -> None:
    text = (demo.twin_path if twin else demo.text_path).read_text(encoding="utf-8")
    parsed = parse_policy(text)

    assert parsed.title == demo.name
    assert missing_sections(parsed) == []
    assert 2 <= len(parsed.labels) <= 3
    for label in parsed.labels:
        assert label.has_includes and label.has_excludes, label.code
        assert 3 <= len(label.includes) <= 5, label.code
        assert 2 <= len(label.excludes) <= 4, label.code


@pytest.mark.parametrize("demo", DEMO_POLICIES, ids=_IDS)
@pytest.mark.parametrize("twin", [False, True], ids=["text", "twin"])
def test_bold_terms_in_labels_are_defined(demo: DemoPolicy, twin: bool) -> None:
    text = (demo.twin_path if twin else demo.text_path).read_text(encoding="utf-8")
    defined = set(_TERM.findall(_section(text, "Definition of Terms")))
    used = set(_BOLD.findall(_section(text, "Definition of Labels")))

    assert used, "the labels use no defined terms"
    assert used <= defined, used - defined


@pytest.mark.parametrize("demo", DEMO_POLICIES, ids=_IDS)
@pytest.mark.parametrize("twin", [False, True], ids=["text", "twin"])
def test_demo_policy_has_no_intent_words(demo: DemoPolicy, twin: bool) -> None:
    text = (demo.twin_path if twin else demo.text_path).read_text(encoding="utf-8").lower()

    assert [word for word in INTENT_WORDS if word in text] == []


@pytest.mark.parametrize("demo", DEMO_POLICIES, ids=_IDS)
def test_demo_samples_are_short_labeled_and_mixed(demo: DemoPolicy) -> None:
    assert demo.samples_path.stat().st_size < 100_000
    with demo.samples_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["id", "text", "expected_label"]
        rows = list(reader)

    assert len(rows) == 300
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({" ".join(row["text"].split()) for row in rows}) == len(rows)
    assert all(5 <= len(row["text"].split()) <= 40 for row in rows)
    assert {row["expected_label"] for row in rows} == {"0", "1"}
    positives = sum(row["expected_label"] == "1" for row in rows)
    assert 0.3 <= positives / len(rows) <= 0.5


@pytest.mark.django_db
def test_seed_ships_gold_labels_and_an_evaluation_set() -> None:
    from labeling.gold.services import job_gold_report
    from labeling.jobs.evaluation import evaluation_choice
    from labeling.models import Job, Label, PolicyEvaluation

    _seed()
    first = list(PolicyEvaluation.objects.order_by("pk").values_list("pk", "sample_set_id"))
    _seed()

    assert list(PolicyEvaluation.objects.order_by("pk").values_list("pk", "sample_set_id")) == first
    demo = DEMO_POLICIES[0]
    policy = Policy.objects.get(name=demo.name)
    sample_set = SampleSet.objects.get(name=demo.sample_set_name)
    assert evaluation_choice(policy).sample_set == sample_set
    assert not sample_set.items.filter(expected_label__isnull=True).exists()
    # A job labeling every demo item as its expected label scores F1 = 1 against the gold.
    version = policy.versions.get()
    job = Job.objects.create(
        version=version,
        sample_set=sample_set,
        status="succeeded",
        text_a=version.text,
        text_b=version.twin_text,
        item_count=sample_set.item_count,
        created_by=version.author,
    )
    Label.objects.bulk_create(
        Label(job=job, item_id=pk, side=side, label=expected, p1=float(expected))
        for pk, expected in sample_set.items.values_list("pk", "expected_label")
        for side in "AB"
    )
    side_a = job_gold_report(job).sides["A"]
    assert side_a.score.n == sample_set.item_count and side_a.score.f1 == 1.0


@pytest.mark.django_db
def test_start_jobs_queues_one_first_job_per_demo_policy_once(
    sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    """``make run`` seeds with --start-jobs: one job of v1 on the demo samples per policy, whose
    chunks are sent at once, and none again on the next run."""
    from labeling.models import Job

    with django_capture_on_commit_callbacks(execute=True):
        out = _seed(start_jobs=True)
    jobs = list(Job.objects.select_related("version", "sample_set"))
    assert len(jobs) == len(DEMO_POLICIES) and out.count("Queued job #") == len(DEMO_POLICIES)
    assert {j.version.number for j in jobs} == {1}
    assert all(j.sample_size is None and j.item_count == j.sample_set.item_count for j in jobs)
    assert {r["job_id"] for r in sent} == {j.pk for j in jobs}
    with django_capture_on_commit_callbacks(execute=True):
        again = _seed(start_jobs=True)
    assert Job.objects.count() == len(DEMO_POLICIES) and "Queued job #" not in again
