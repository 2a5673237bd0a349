"""manage.py import_policy bundle.json [--user NAME] [--source NAME] [--add-to-existing]
[--finalized-as imported|draft]: recreate a policy from its bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from policies.bundle import (
    SOURCE_MAX_LENGTH,
    BundleError,
    FinalizedAs,
    import_bundle,
    read_bundle,
)


class Command(BaseCommand):
    help = (
        "Import a policy bundle (from export_policy --format json); twice changes nothing. "
        "Nothing it brings is finalized here."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bundle", help="path to the bundle (.json)")
        parser.add_argument(
            "--user",
            default=None,
            help="username recorded as the importer (default: the first superuser)",
        )
        parser.add_argument(
            "--source",
            default=None,
            help="the studio the bundle comes from, kept on every version it adds "
            "(default: the file's name)",
        )
        parser.add_argument(
            "--add-to-existing",
            action="store_true",
            help="add the bundle's new versions to a policy already here with the same slug "
            "(without it, such a bundle adds nothing and says so)",
        )
        parser.add_argument(
            "--finalized-as",
            choices=FinalizedAs.values,
            default=FinalizedAs.IMPORTED,
            help="what a version the bundle calls finalized becomes: imported (the source's "
            "finalizer and evidence, marked as imported) or draft; never finalized here",
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
        path = options["bundle"]
        source = options["source"] or f"the file {Path(path).name}"[:SOURCE_MAX_LENGTH]
        try:
            with open(path, "rb") as stream:
                result = import_bundle(
                    read_bundle(stream),
                    by=user,
                    source=source,
                    add_to_existing=options["add_to_existing"],
                    finalized_as=options["finalized_as"],
                )
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from exc
        except BundleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(result.summary())
