"""``.env.example`` lists every variable the web side, the workers or the compose file read, and
nothing else; the code reads variables only through ``worker.env`` (one set of rules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from cope_studio.lib import env as web_env
from worker import env as worker_env
from worker.config import ENV_VARS, WorkerConfig

REPO = Path(__file__).resolve().parents[1]
CODE = ["cope_studio", "accounts", "worker", "labeling", "policies", "gunicorn.conf.py"]
READER = re.compile(
    r"\benv_(?:str|secret|bool|int|float|choice|list)\(\s*\"([A-Z][A-Z0-9_]*)\"", re.S
)
RAW = re.compile(r"\b(?:os\.environ(?:\.get)?|os\.getenv|environ\.get)\(\s*\"([A-Z][A-Z0-9_]*)\"")
RAW_INDEX = re.compile(r"\bos\.environ\[\s*\"([A-Z][A-Z0-9_]*)\"\s*\]")
# Set by us for third-party code, never read as configuration.
SET_ONLY = {"DJANGO_SETTINGS_MODULE"}


def _sources() -> list[Path]:
    files: list[Path] = []
    for name in CODE:
        path = REPO / name
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if "migrations" not in f.parts]


def read_by_code() -> set[str]:
    names: set[str] = set()
    for file in _sources():
        text = file.read_text(encoding="utf-8")
        names |= set(READER.findall(text)) | set(RAW.findall(text)) | set(RAW_INDEX.findall(text))
    return names - SET_ONLY


def read_by_compose() -> set[str]:
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


def listed() -> set[str]:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))


def test_env_example_lists_every_variable_read_and_no_other() -> None:
    read = read_by_code() | read_by_compose()
    assert len(read) > 60  # the scan finds the readers at all
    assert sorted(read - listed()) == [], "read but missing from .env.example"
    assert sorted(listed() - read) == [], "in .env.example but read nowhere"


def test_worker_env_vars_table_matches_what_it_reads() -> None:
    text = (REPO / "worker" / "config.py").read_text(encoding="utf-8")
    assert set(READER.findall(text)) == set(ENV_VARS)


def test_nothing_reads_the_environment_around_the_reader() -> None:
    """Only worker/env.py touches os.environ for configuration (HF_HUB_OFFLINE is also read
    by huggingface_hub itself, which worker/cope.py mirrors)."""
    offenders = []
    for file in _sources():
        text = file.read_text(encoding="utf-8")
        for name in set(RAW.findall(text)) | set(RAW_INDEX.findall(text)):
            if name not in SET_ONLY and name != "HF_HUB_OFFLINE":
                offenders.append(f"{file.relative_to(REPO)}: {name}")
    assert offenders == []


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, 7), ({"N": ""}, 7), ({"N": "  "}, 7), ({"N": " 12 "}, 12)],
)
def test_blanks_mean_the_default_on_both_sides(environ: dict[str, str], expected: int) -> None:
    assert web_env.env_int("N", 7, environ) == worker_env.env_int("N", 7, environ) == expected


def test_both_sides_reject_the_same_malformed_values(tmp_path: Path) -> None:
    for environ in ({"B": "maybe"},):
        with pytest.raises(ImproperlyConfigured, match="B='maybe' is not a boolean"):
            web_env.env_bool("B", False, environ)
        with pytest.raises(worker_env.EnvError, match="B='maybe' is not a boolean"):
            worker_env.env_bool("B", False, environ)
    secret = tmp_path / "token"
    secret.write_text("hf_abc\n", encoding="utf-8")
    both = {"HF_TOKEN": "x", "HF_TOKEN_FILE": str(secret)}
    with pytest.raises(worker_env.EnvError, match="not both"):
        WorkerConfig.from_env(both)
    with pytest.raises(ImproperlyConfigured, match="not both"):
        web_env.env_secret("HF_TOKEN", "", both)
    assert WorkerConfig.from_env({"HF_TOKEN_FILE": str(secret)}).hf_token == "hf_abc"
    assert web_env.env_bool("X", True, {"X": ""}) is True  # blank: the default, both sides
    assert WorkerConfig.from_env({"COPE_PRELOAD": ""}).preload is True
