"""gunicorn's processes and threads (gunicorn.conf.py): two processes per CPU with four threads
unless told otherwise, and a worker takes a connection only when a thread of its is free."""

from __future__ import annotations

import http.client
import os
import runpy
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def _env(extra: dict[str, str], *paths: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COPE_", "GUNICORN_"))}
    return {
        **base,
        "PYTHONPATH": os.pathsep.join(str(p) for p in (REPO, *paths)),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "GUNICORN_CONTROL_SOCKET": "off",
        **extra,
    }


def _config(
    extra: dict[str, str], prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), GUNICORN, "--print-config", "cope_studio.wsgi"],
        cwd=REPO,  # gunicorn reads ./gunicorn.conf.py, as bin/run-studio and the image run it
        env=_env(extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(extra: dict[str, str], prefix: list[str] | None = None) -> dict[str, str]:
    result = _config(extra, prefix)
    assert result.returncode == 0, result.stderr
    pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def test_two_processes_per_cpu_it_may_run_on_with_four_threads_unless_told_otherwise() -> None:
    # A container or machine that lets it run on one CPU gets two processes.
    assert _settings({}, prefix=["taskset", "-c", "0"])["workers"] == "2"
    default = _settings({})
    assert default["threads"] == "4"
    assert default["worker_class"] == "gthread"
    told = _settings({"COPE_WEB_WORKERS": "3", "COPE_WEB_THREADS": "2"})
    assert (told["workers"], told["threads"]) == ("3", "2")
    # The command line still wins over the file, as gunicorn documents.
    assert _settings({"GUNICORN_CMD_ARGS": "--workers 5"})["workers"] == "5"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COPE_WEB_WORKERS", "0", "COPE_WEB_WORKERS=0 is below the minimum 1"),
        ("COPE_WEB_THREADS", "four", "COPE_WEB_THREADS='four' is not a whole number"),
    ],
)
def test_a_malformed_worker_setting_stops_gunicorn_with_its_name(
    name: str, value: str, message: str
) -> None:
    result = _config({name: value})
    assert result.returncode != 0
    assert message in result.stderr


def _hook(keepalive: int, threads: int) -> Any:
    conf = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    values = {"keepalive": keepalive, "threads": threads, "worker_connections": 1000}
    cfg = SimpleNamespace(**values, set=lambda name, value: values.__setitem__(name, value))
    conf["on_starting"](SimpleNamespace(cfg=cfg))
    return values["worker_connections"]


def test_without_keep_alive_a_worker_holds_no_more_connections_than_threads() -> None:
    assert _hook(keepalive=0, threads=4) == 4
    assert _hook(keepalive=0, threads=1) == 1
    # Kept-alive connections need room beside the ones being served: gunicorn's setting stays.
    assert _hook(keepalive=2, threads=4) == 1000


APP = """
import os, time
from pathlib import Path

RELEASE = Path(os.environ["TEST_RELEASE_FILE"])
BUSY = Path(os.environ["TEST_BUSY_FILE"])


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        BUSY.write_text(str(os.getpid()))
        deadline = time.monotonic() + 30
        while not RELEASE.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, timeout: float) -> tuple[int, float]:
    """(the answering process's pid, seconds taken)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return int(conn.getresponse().read()), time.monotonic() - started
    finally:
        conn.close()


def _quick(port: int) -> int | str:
    """The pid of the process that answered a quick request, or "waited" when none did within
    5 s (the request sat in the busy process's queue)."""
    try:
        return _get(port, "/", timeout=5)[0]
    except TimeoutError:
        return "waited"


def test_a_worker_whose_threads_are_busy_leaves_new_requests_to_an_idle_one(
    tmp_path: Path,
) -> None:
    """Two processes of one thread each; one is held by a slow request. Every quick request
    must be answered at once by the other: with gthread's default (a worker accepts up to 1,000
    connections) about half of them went to the busy process and waited for the slow one."""
    (tmp_path / "slowapp.py").write_text(textwrap.dedent(APP))
    release, busy = tmp_path / "release", tmp_path / "busy"
    port = _free_port()
    env = _env(
        {
            "COPE_WEB_WORKERS": "2",
            "COPE_WEB_THREADS": "1",
            "TEST_RELEASE_FILE": str(release),
            "TEST_BUSY_FILE": str(busy),
        },
        tmp_path,
    )
    server = subprocess.Popen(
        [GUNICORN, "slowapp:app", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        pids: set[int] = set()
        while len(pids) < 2 and time.monotonic() < deadline:  # both processes up
            try:
                pids.add(_get(port, "/", timeout=5)[0])
            except OSError:
                time.sleep(0.2)
        assert len(pids) == 2, "gunicorn did not start two workers"

        slow = threading.Thread(target=_get, args=(port, "/slow", 60))
        slow.start()
        while not (busy.exists() and busy.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        held = int(busy.read_text())
        answers = [_quick(port) for _ in range(10)]
        release.write_text("go")
        slow.join(timeout=30)
        assert held not in answers
        assert "waited" not in answers
    finally:
        release.write_text("go")
        server.terminate()
        server.wait(timeout=30)
