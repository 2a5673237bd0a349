"""manage.py import_policy bundle.json [--user NAME]: recreate a policy from its bundle."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from policies.bundle import BundleError, import_bundle, read_bundle


class Command(BaseCommand):
    help = "Import a policy bundle (from export_policy --format json); twice changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bundle", help="path to the bundle (.json)")
        parser.add_argument(
            "--user",
            default=None,
            help="username recorded as the importer (default: the first superuser)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if options["user"]:
            user = User.objects.filter(**{User.USERNAME_FIELD: options["user"]}).first()
        else:
            user = User.objects.filter(is_superuser=True).order_by("pk").first()
        if user is None:
            raise CommandError(
                "No user to record as the importer: pass --user, or create a superuser first."
            )
        try:
            with open(options["bundle"], "rb") as stream:
                result = import_bundle(read_bundle(stream), by=user)
        except OSError as exc:
            raise CommandError(f"Cannot read {options['bundle']}: {exc.strerror}.") from exc
        except BundleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(result.summary())
