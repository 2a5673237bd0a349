"""A fresh Django process for tests that need one: settings read from a chosen environment, or
two processes that must share something (a cache, a database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fresh_environ(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A fresh process's environment: none of this run's studio or database variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COPE_", "DATABASE_"))}
    return {
        **base,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "cope_studio.settings",
        "DJANGO_SECRET_KEY": "test-only",
        "COPE_DATA_DIR": str(tmp_path),
        **env,
    }


def run_django(
    code: str, env: dict[str, str], tmp_path: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=fresh_environ(env, tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )
