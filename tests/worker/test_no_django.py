"""``worker/`` runs on GPU hosts without Django: it imports neither Django nor the apps."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "cope_studio", "labeling", "policies")


def test_no_worker_module_imports_django_or_the_apps() -> None:
    offenders = []
    files = sorted((REPO / "worker").rglob("*.py"))
    assert len(files) > 10
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            offenders += [
                f"{file.relative_to(REPO)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in FORBIDDEN
            ]
    assert offenders == []


def test_the_worker_entry_points_load_without_django() -> None:
    """As on a GPU host without Django: importing any of them is refused here. (kombu tries
    ``django`` itself, optionally; that must stay optional.)"""
    code = (
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {FORBIDDEN!r}:\n"
        "            raise ImportError(f'{name} is not installed on GPU hosts')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "import worker.tasks, worker.heartbeat, worker.weights, worker.__main__\n"
        "import worker.env, worker.config, worker.loader, worker.celery_app\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
