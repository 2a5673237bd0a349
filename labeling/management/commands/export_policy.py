"""manage.py export_policy <slug> [--version N] --format md|json|jsonl|csv [--twin] [-o FILE]

md: a finalized version's text byte for byte (with --twin, the twin too: a second file next to
FILE, or a second section on stdout). json: the bundle import_policy reads. jsonl: training rows,
with a summary on stderr (and FILE.summary.json). csv: the deciding job's items. Streams.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.release import exports
from policies.models import Policy

TWIN_SECTION = "\n\n<!-- ===== twin (B) ===== -->\n\n"


def _write(chunks: Iterable[str], target: str | None, stdout: TextIO) -> None:
    if target is None:
        for chunk in chunks:
            stdout.write(chunk)
        stdout.flush()
        return
    with open(target, "w", encoding="utf-8", newline="") as out:
        for chunk in chunks:
            out.write(chunk)


def twin_path(target: str) -> str:
    path = Path(target)
    return str(path.with_name(f"{path.stem}.twin{path.suffix or '.md'}"))


class Command(BaseCommand):
    help = "Export a policy: Markdown, JSON bundle, training JSONL or the deciding job's CSV."

    def add_base_argument(self, parser: Any, *args: Any, **kwargs: Any) -> None:
        # "--version N" picks the policy version here, not Django's version banner.
        if "--version" not in args:
            super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--version", type=int, dest="number", default=None)
        parser.add_argument("--format", choices=["md", "json", "jsonl", "csv"], required=True)
        parser.add_argument("--twin", action="store_true", help="md: also the twin")
        parser.add_argument("-o", "--output", default=None, help="file (default: stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        policy = Policy.objects.filter(slug=options["slug"]).first()
        if policy is None:
            raise CommandError(f"No policy with the slug {options['slug']!r}.")
        fmt, target = options["format"], options["output"]
        out = sys.stdout
        try:
            if fmt == "json":
                _write(exports.iter_bundle(policy), target, out)
            elif fmt == "jsonl":
                summary = exports.TrainingSummary()
                _write(exports.iter_training_jsonl(policy, summary), target, out)
                text = json.dumps(summary.to_dict())
                self.stderr.write(f"summary: {text}")
                if target is not None:
                    Path(f"{target}.summary.json").write_text(text + "\n", encoding="utf-8")
            else:
                version = exports.finalized_version(policy, options["number"])
                if fmt == "csv":
                    _write(exports.iter_job_csv(exports.deciding_job_of(version)), target, out)
                elif target is not None:
                    _write([version.text], target, out)
                    if options["twin"]:
                        _write([version.twin_text], twin_path(target), out)
                else:
                    twin = [TWIN_SECTION, version.twin_text] if options["twin"] else []
                    _write([version.text, *twin], None, out)
        except exports.ExportError as exc:
            raise CommandError(str(exc)) from exc
