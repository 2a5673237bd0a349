"""``manage.py seed_demo``: demo users, three demo policies (v1 with a hand-written twin) and one
sample set per harm area, read from ``cope_studio/demo/``.

Each demo CSV has an ``expected_label`` column: imported, it is the gold label of every demo
item (see ``labeling.gold``), and each demo policy's evaluation set is its demo sample set, so
the first job of a demo policy shows precision, recall and F1 against gold.

Idempotent: a user, policy or sample set that already exists (by name) is left as it is, so a
second run changes nothing. Existing users keep their passwords; only new ones get ``--password``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

import cope_studio
from labeling.jobs.services import start_job
from labeling.models import Job, PolicyEvaluation, SampleSet
from labeling.samples.services import import_sample_set
from labeling.samples.uploads import StoredUpload
from policies.models import Policy
from policies.roles import ADMIN, AUTHOR, REVIEWER, ensure_roles
from policies.services import create_policy, create_version

DEMO_DIR = Path(cope_studio.__file__).resolve().parent / "demo"
DEFAULT_PASSWORD = "cope-demo-2026"


@dataclass(frozen=True)
class DemoPolicy:
    slug: str
    name: str
    description: str
    sample_set_name: str

    @property
    def text_path(self) -> Path:
        return DEMO_DIR / "policies" / f"{self.slug}.md"

    @property
    def twin_path(self) -> Path:
        return DEMO_DIR / "policies" / f"{self.slug}.twin.md"

    @property
    def samples_path(self) -> Path:
        return DEMO_DIR / "samples" / f"{self.slug}.csv"


DEMO_POLICIES: tuple[DemoPolicy, ...] = (
    DemoPolicy(
        slug="hate-speech-strict",
        name="Hate speech — strict",
        description=(
            "Attacks on people because of a protected characteristic: slurs, dehumanization, "
            "inferiority, contempt, exclusion and violence. Strict: jokes and lyrics count."
        ),
        sample_set_name="Demo samples — Hate speech",
    ),
    DemoPolicy(
        slug="harassment-bullying",
        name="Harassment & bullying",
        description=(
            "Insults, threats and pile-ons against a specific person; not criticism of public "
            "figures' conduct or competitive trash talk."
        ),
        sample_set_name="Demo samples — Harassment & bullying",
    ),
    DemoPolicy(
        slug="self-harm-suicide",
        name="Self-harm & suicide",
        description=(
            "Encouragement, method requests and statements of current risk; not recovery "
            "stories, support resources or everyday hyperbole."
        ),
        sample_set_name="Demo samples — Self-harm & suicide",
    ),
)


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    superuser: bool = False


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("demo-author", AUTHOR),
    DemoUser("demo-reviewer", REVIEWER),
    DemoUser("demo-admin", ADMIN, superuser=True),
)


class Command(BaseCommand):
    help = (
        "Create demo users (demo-author, demo-reviewer, demo-admin), three demo policies with a "
        "hand-written twin, and a sample set per policy. Safe to run again: existing ones are "
        "kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            default=DEFAULT_PASSWORD,
            help=f"Password for newly created demo users (default: {DEFAULT_PASSWORD}).",
        )
        parser.add_argument(
            "--start-jobs",
            action="store_true",
            help="Queue a first binocular job of each demo policy that has none (make run does, "
            "so a newcomer sees agreement and precision/recall/F1 once the workers start).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password: str = options["password"]
        ensure_roles()
        users = {}
        new_users = []
        for spec in DEMO_USERS:
            user, created = _ensure_user(spec, password)
            users[spec.role] = user
            if created:
                new_users.append(spec.username)
        author = users[AUTHOR]
        for demo in DEMO_POLICIES:
            if _ensure_policy(demo, author):
                self.stdout.write(f"Created policy “{demo.name}” with v1 and its twin.")
            else:
                self.stdout.write(f"Policy “{demo.name}” exists; left as it is.")
            sample_set = _ensure_sample_set(demo, author)
            if sample_set is None:
                self.stdout.write(f"Sample set “{demo.sample_set_name}” exists; left as it is.")
            else:
                self.stdout.write(
                    f"Imported sample set “{sample_set.name}”: {sample_set.item_count} items."
                )
            gold = _ensure_evaluation_set(demo)
            if gold is not None:
                self.stdout.write(
                    f"Evaluation set of “{demo.name}”: its demo samples, {gold} with a gold label "
                    "(the expected_label column): run a job to see precision, recall and F1."
                )
            if options["start_jobs"]:
                job = _ensure_first_job(demo, author)
                if job is not None:
                    self.stdout.write(f"Queued job #{job.pk}: v1 of “{demo.name}” on its samples.")
        self.stdout.write(self.style.SUCCESS("Demo data ready. Sign in as:"))
        for spec in DEMO_USERS:
            shown = password if spec.username in new_users else "(existing user, unchanged)"
            self.stdout.write(f"  {spec.username:<14} role {spec.role:<9} password {shown}")


def _ensure_user(spec: DemoUser, password: str) -> tuple[Any, bool]:
    user_model = get_user_model()
    user = user_model.objects.filter(username=spec.username).first()
    created = user is None
    if user is None:
        user = user_model.objects.create_user(
            username=spec.username,
            password=password,
            is_staff=spec.superuser,
            is_superuser=spec.superuser,
        )
    elif spec.superuser and not (user.is_staff and user.is_superuser):
        user_model.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    user.groups.add(Group.objects.get(name=spec.role))
    return user, created


def _ensure_policy(demo: DemoPolicy, author: Any) -> bool:
    """Create the policy and its v1 unless a policy of that name exists; True if created."""
    if Policy.objects.filter(name=demo.name).exists():
        return False
    text = demo.text_path.read_text(encoding="utf-8")
    twin = demo.twin_path.read_text(encoding="utf-8")
    # One transaction: a policy without its first version would block every later run.
    with transaction.atomic():
        policy = create_policy(name=demo.name, description=demo.description, created_by=author)
        create_version(
            policy=policy,
            text=text,
            twin_text=twin,
            change_note="Demo policy with a hand-written twin.",
            author=author,
        )
    return True


def _ensure_sample_set(demo: DemoPolicy, author: Any) -> SampleSet | None:
    """Import the demo CSV unless a sample set of that name exists; None if it did."""
    if SampleSet.objects.filter(name=demo.sample_set_name).exists():
        return None
    path = demo.samples_path
    # The import reads straight from the shipped file; there is no upload to store or discard.
    upload = StoredUpload(
        token="", path=path, format="csv", original_name=path.name, size=path.stat().st_size
    )
    return import_sample_set(
        upload=upload,
        name=demo.sample_set_name,
        by=author,
        text_column="text",
        id_column="id",
        label_column="expected_label",
        description=(
            f"Demo items for “{demo.name}”: clearly violating, clearly fine and borderline. "
            "Expected labels follow the primary wording."
        ),
    )


def _ensure_evaluation_set(demo: DemoPolicy) -> int | None:
    """Make the demo samples the policy's evaluation set unless one was chosen; the number of
    its items with a gold (expected) label, or None if nothing changed."""
    policy = Policy.objects.filter(name=demo.name).first()
    sample_set = SampleSet.objects.filter(name=demo.sample_set_name).first()
    if policy is None or sample_set is None:
        return None
    _, created = PolicyEvaluation.objects.get_or_create(
        policy=policy, defaults={"sample_set": sample_set, "chosen_at": timezone.now()}
    )
    if not created:
        return None
    return sample_set.items.filter(expected_label__isnull=False).count()


def _ensure_first_job(demo: DemoPolicy, author: Any) -> Any:
    """Queue v1 × the demo samples when the policy has no job yet (the workers pick it up when
    they start); the job, or None if one existed or something is missing."""
    policy = Policy.objects.filter(name=demo.name).first()
    sample_set = SampleSet.objects.filter(name=demo.sample_set_name).first()
    if policy is None or sample_set is None or not sample_set.is_ready:
        return None
    if Job.objects.filter(version__policy=policy).exists():
        return None
    version = policy.versions.order_by("number").first()
    if version is None or not version.has_twin:
        return None
    return start_job(version=version, sample_set=sample_set, sample_size=None, by=author)
