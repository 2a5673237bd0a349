"""The compose file validates, every service has a health check, and the images hold what they
should: each image's build context is computed by applying ``.dockerignore`` to the tree (so
nothing of ``.venv/``, ``var/``, ``secrets/`` or ``.git`` is sent), and every path a Dockerfile
copies exists in that context.

No Docker daemon is needed (nor used): ``docker compose config`` / ``docker-compose config``
only parse and validate. ``bin/check-test-deps`` installs Debian's ``docker-compose`` for CI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {"web": REPO / "Dockerfile", "worker": REPO / "Dockerfile.worker"}
# Local state a developer's checkout holds; none of it may reach an image.
PRIVATE_PATHS = [
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/django/__init__.py",
    "var/db.sqlite3",
    "var/secret_key",
    "var/uploads/import-1.csv",
    "var/broker/messages/1.msg",
    "secrets/django_secret_key",
    ".git/HEAD",
    ".git/objects/ab/cdef",
    ".env",
    "labeling/__pycache__/models.cpython-311.pyc",
    "artifacts/bench.json",
]
PRIVATE_PREFIXES = (".venv/", "var/", "secrets/", ".git/", "artifacts/")


# .dockerignore, as Docker applies it ------------------------------------------------------------


def _rules() -> list[tuple[re.Pattern[str], bool]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:] if negate else line).lstrip("/")
        rules.append((re.compile(_glob_to_regex(pattern)), negate))
    return rules


def _glob_to_regex(pattern: str) -> str:
    """Go's filepath.Match plus ``**`` (any number of directories), as Docker reads it."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.index("]", i)
            out.append("[" + pattern[i + 1 : end].replace("!", "^", 1) + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "^" + "".join(out) + "$"


def excluded(path: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """The last rule matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for regex, negate in rules:
        if any(regex.match(candidate) for candidate in candidates):
            result = not negate
    return result


def _tree() -> Iterator[str]:
    """Every path under the checkout (symlinks such as .venv as themselves, not followed)."""
    for root, dirs, files in os.walk(REPO):
        rel_root = os.path.relpath(root, REPO)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            yield os.path.normpath(os.path.join(rel_root, name))


def build_context() -> set[str]:
    rules = _rules()
    return {p for p in set(_tree()) | set(PRIVATE_PATHS) if not excluded(p, rules)}


def _copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY/ADD from the build context."""
    found = []
    for line in re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8")).splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        rest = words[1].strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        args = [a for a in args if not a.startswith("--")]
        found.append((args[:-1], args[-1]))
    return found


def image_files(name: str, context: set[str]) -> set[str]:
    """What the image gets from the context: the paths its COPY lines name, recursively."""
    files: set[str] = set()
    for sources, _ in _copies(DOCKERFILES[name]):
        for source in sources:
            source = os.path.normpath(source)
            files |= {
                p for p in context if source == "." or p == source or p.startswith(source + "/")
            }
    return files


def test_dockerignore_matching_follows_docker_rules() -> None:
    rules = [
        (re.compile(_glob_to_regex(p)), neg)
        for p, neg in [
            ("var", False),
            ("**/*.pyc", False),
            (".env.*", False),
            (".env.example", True),
        ]
    ]
    assert excluded("var/db.sqlite3", rules) and excluded("var", rules)
    assert not excluded("variables.py", rules) and not excluded("labeling/var.py", rules)
    assert excluded("a/b/c.pyc", rules) and excluded("c.pyc", rules)
    assert excluded(".env.local", rules) and not excluded(".env.example", rules)


def test_build_context_holds_the_app_and_nothing_private() -> None:
    context = build_context()
    leaked = sorted(p for p in context if p.startswith(PRIVATE_PREFIXES) or p in PRIVATE_PATHS)
    assert not leaked, f"the build context would hold: {leaked[:20]}"
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]
    for needed in (
        "manage.py",
        "pyproject.toml",
        "README.md",
        "gunicorn.conf.py",
        "bin/docker-init",
        "cope_studio/settings.py",
        "labeling/models/core.py",
        "policies/models.py",
        "worker/tasks.py",
        "templates/base.html",
        "static/css/studio.css",
    ):
        assert needed in context, needed
    assert not [p for p in context if p.startswith(("tests/", "docs/"))]


def test_images_hold_what_they_run_and_nothing_private() -> None:
    context = build_context()
    web = image_files("web", context)
    worker = image_files("worker", context)
    assert {"manage.py", "cope_studio/wsgi.py", "worker/contract.py", "templates/base.html"} <= web
    assert "worker/tasks.py" in worker and "worker/heartbeat.py" in worker
    # The model image carries no Django code: the worker imports none.
    assert not [p for p in worker if p.startswith(("cope_studio/", "labeling/", "policies/"))]
    for files in (web, worker):
        assert not [p for p in files if p.startswith(PRIVATE_PREFIXES)]


def test_every_path_the_dockerfiles_copy_exists_in_the_context() -> None:
    context = build_context()
    for name, dockerfile in DOCKERFILES.items():
        copies = _copies(dockerfile)
        assert copies, f"{name}: no COPY found"
        for sources, _ in copies:
            for source in sources:
                source = os.path.normpath(source)
                present = source == "." or any(
                    p == source or p.startswith(source + "/") for p in context
                )
                assert present, f"{dockerfile.name} copies {source!r}, not in the build context"


@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists()
    or subprocess.run(
        ["/usr/bin/python3", "-c", "import docker.utils.build"], capture_output=True
    ).returncode,
    reason="docker-py (Debian's python3-docker, a dependency of docker-compose) not installed",
)
def test_context_agrees_with_docker_py_reading_of_dockerignore() -> None:
    """docker-py's own exclusion code (what docker-compose 1.x builds with) agrees."""
    script = (
        "import json, sys\n"
        "from docker.utils.build import exclude_paths\n"
        "lines = open(sys.argv[1] + '/.dockerignore').read().splitlines()\n"
        "patterns = [l.strip() for l in lines if l.strip() and not l.strip().startswith('#')]\n"
        "print(json.dumps(sorted(exclude_paths(sys.argv[1], patterns))))\n"
    )
    out = subprocess.run(
        ["/usr/bin/python3", "-c", script, str(REPO)], capture_output=True, text=True, check=True
    ).stdout
    theirs = {p for p in json.loads(out) if not os.path.isdir(REPO / p) or os.path.islink(REPO / p)}
    # docker-py always sends these two (the daemon needs them); COPY never copies them.
    theirs -= {"Dockerfile", ".dockerignore"}
    ours = {p for p in build_context() if p not in PRIVATE_PATHS}
    assert ours == theirs, (sorted(ours - theirs)[:10], sorted(theirs - ours)[:10])


def test_images_run_as_a_user_not_root() -> None:
    for dockerfile in DOCKERFILES.values():
        users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(encoding="utf-8"), re.M)
        assert users and users[-1] not in ("root", "0"), dockerfile.name
        assert "HEALTHCHECK" in dockerfile.read_text(encoding="utf-8")


# The compose file ------------------------------------------------------------------------------


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.fixture(scope="module")
def compose_config() -> dict:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed "
            "(bin/check-test-deps installs Debian's docker-compose)"
        )
    result = subprocess.run(
        [*command, "--profile", "vllm", "--profile", "setup", "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_TOKEN": ""},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_validates_and_has_every_service(compose_config: dict) -> None:
    services = compose_config["services"]
    assert {"db", "redis", "migrate", "web", "bookkeeping", "beat", "gpu-worker"} <= set(services)
    assert {"vllm", "openai-worker", "fetch-weights", "merge-cope"} <= set(services)
    # The default `up` starts no profiled service.
    for name in ("vllm", "openai-worker", "fetch-weights", "merge-cope"):
        assert services[name].get("profiles"), name
    for name in ("db", "redis", "migrate", "web", "bookkeeping", "beat", "gpu-worker"):
        assert not services[name].get("profiles"), name


def test_every_long_running_service_has_a_health_check(compose_config: dict) -> None:
    one_shots = {"migrate", "fetch-weights", "merge-cope"}
    for name, service in compose_config["services"].items():
        check = service.get("healthcheck") or {}
        if name in one_shots:
            # docker-compose 1.x writes `disable: true` as `test: [NONE]`.
            assert check.get("disable") is True or check.get("test") == ["NONE"], name
        else:
            assert check.get("test") not in (None, ["NONE"]) and not check.get("disable"), name


def test_web_side_waits_for_migrations_and_beat_is_single(compose_config: dict) -> None:
    services = compose_config["services"]
    assert "docker-init" in " ".join(services["migrate"]["command"])
    for name in ("web", "bookkeeping", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    beats = [n for n, s in services.items() if "beat" in (s.get("command") or [])]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert "gunicorn" in services["web"]["command"]


def test_web_processes_share_a_redis_cache(compose_config: dict) -> None:
    # Rate-limit counters shared by every gunicorn worker, without a database round trip.
    env = compose_config["services"]["web"]["environment"]
    assert env["COPE_CACHE_URL"].startswith("redis://redis:6379/")
    assert env["COPE_CACHE_URL"] != env["CELERY_BROKER_URL"]  # the broker's db is its own


def test_model_workers_hold_no_database_credentials_and_use_one_entry_point(
    compose_config: dict,
) -> None:
    services = compose_config["services"]
    for name in ("gpu-worker", "openai-worker", "fetch-weights", "merge-cope"):
        env = services[name].get("environment") or {}
        assert not [k for k in env if k.startswith(("DATABASE", "DJANGO_", "POSTGRES"))], name
    assert services["openai-worker"]["environment"]["COPE_BACKEND"] == "openai"
    assert services["openai-worker"]["environment"]["COPE_OPENAI_BASE_URL"].startswith(
        "http://vllm"
    )
    worker_cmd = (REPO / "Dockerfile.worker").read_text(encoding="utf-8")
    assert '"worker", "serve"' in worker_cmd and "solo" not in worker_cmd
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
