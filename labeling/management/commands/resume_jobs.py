"""Re-send the lost chunks of active jobs: sent, unanswered, in no queue and with no worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from labeling.jobs.services import resume_stalled_jobs


class Command(BaseCommand):
    help = (
        "Re-send chunks sent more than --minutes ago that no queue and no model worker holds "
        "(after a broker restart or a lost worker). Safe to repeat: results are recorded once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--minutes", type=float, default=10.0)

    def handle(self, *args: Any, **options: Any) -> None:
        resent = resume_stalled_jobs(stale_after=timedelta(minutes=options["minutes"]))
        for job_id, n in resent.items():
            self.stdout.write(f"job {job_id}: re-sent {n} chunk(s)")
        if not resent:
            self.stdout.write("no stalled chunks")
