"""``manage.py bench_queue``: the review queue with months of history and 20 reviewers at once.

It builds a history the way a team makes one (``_queue_history``: policies with versions and
reruns, every label stored, mismatches as review tasks, most decided with quotes and notes, gold
labels, open tasks spread across the jobs). At each size of ``--labels``, built one on top of the
other, it brings the tables to the state a running server's are in (statistics, and the build's
pages written to disk: ``_queue_history.settle``), starts the web app in the
server the setup really runs (gunicorn as ``gunicorn.conf.py`` sets it up: processes and threads
as there, no keep-alive), and lets ``--reviewers`` client threads, each logged in as its own
reviewer, loop: GET the next task (the htmx request the page makes), think, POST the decision. It
prints p50/p95/p99 of the whole next-task request and of the decision save, one JSON line per
size, then a growth line. Everything it created is deleted afterwards.

Sizes default to 100,000 / 1,000,000 / 5,000,000 labels, on the two setups the studio runs:
- PostgreSQL (``DATABASE_URL``): sample sets as large as the jobs' samples; it waits for
  autovacuum and autoanalyze to catch up (never runs VACUUM or ANALYZE itself, unless autovacuum
  is off on the server: then plain ANALYZE, and the output says so).
- The embedded default (SQLite, no ``DATABASE_URL``; the file in ``COPE_DATA_DIR``): sample sets
  3.25 times larger than the samples jobs label, so that 1,000,000 labels come with 325,000 items
  stored; no ANALYZE (the embedded default never runs one).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.test import Client
from django.urls import reverse

from labeling.management.commands._queue_history import (
    CLAUSES,
    POLICIES,
    History,
    clean,
    count,
    grow_to,
    items_stored,
    settle,
    start_history,
)
from labeling.models import Decision, Label, ReviewStatus, ReviewTask

# Per database: history sizes, items stored per item a job labels.
DEFAULTS = {
    "postgresql": {"labels": "100000,1000000,5000000", "set_factor": 1.0},
    "sqlite": {"labels": "100000,1000000,5000000", "set_factor": 3.25},
}


def _percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 1)


_GONE = (BrokenPipeError, ConnectionResetError, http.client.HTTPException)


def _send(
    conn: http.client.HTTPConnection,
    method: str,
    url: str,
    body: str | None,
    headers: dict[str, str],
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, bytes, float]:
    """One request and its time in ms; a keep-alive connection the server closed while the
    reviewer was thinking is reopened (as a browser does) and the request timed again."""
    for attempt in (1, 2):
        started = time.perf_counter()
        try:
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            return conn, response, raw, (time.perf_counter() - started) * 1000
        except _GONE:
            conn.close()
            conn = http.client.HTTPConnection(conn.host, conn.port, timeout=60)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children still running (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    pids.extend(int(c) for c in children)
    for each in pids:
        try:
            fields = open(f"/proc/{each}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _gunicorn_conf() -> dict[str, Any]:
    """``gunicorn.conf.py``'s settings as the server started here reads them (this environment)."""
    return runpy.run_path(str(settings.BASE_DIR / "gunicorn.conf.py"))


def _shape(options: dict[str, Any]) -> tuple[int, int, int]:
    """(processes, threads a process, keep-alive seconds) of the server: the options given here,
    else ``gunicorn.conf.py``'s."""
    conf = _gunicorn_conf()
    workers = options["workers"] or int(conf["workers"])
    threads = options["threads"] or int(conf["threads"])
    return workers, threads, int(conf.get("keepalive", 2))


@dataclass
class Timings:
    next_task: list[float] = field(default_factory=list)
    save: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    empty: int = 0


class _ReviewerClient:
    """One reviewer's keep-alive connection to the server, with its session and CSRF token."""

    def __init__(self, port: int, session: str, query: str, timings: Timings) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.base = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}", "Host": "127.0.0.1"}
        self.query = query
        self.timings = timings
        self.csrf = ""

    def next_task(self, measured: Callable[[], bool]) -> int | None:
        """GET the next task as the page's htmx request does: its id, or None (none, or an
        error, which is recorded)."""
        url = reverse("labeling:queue") + self.query
        self.conn, response, raw, took = _send(
            self.conn, "GET", url, None, {**self.base, "HX-Request": "true"}
        )
        body = raw.decode()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie" and value.startswith("csrftoken="):
                self.csrf = value.split(";", 1)[0].split("=", 1)[1]
        if response.status != 200:
            self.timings.errors.append(f"GET {url}: {response.status}")
            return None
        if measured():
            self.timings.next_task.append(took)
        match = re.search(r'data-task-id="(\d+)"', body)
        if match is None:
            self.timings.empty += 1
            return None
        if not self.csrf:
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
            self.csrf = token.group(1) if token else ""
        return int(match.group(1))

    def decide(
        self, task_id: int, rng: random.Random, note: str, measured: Callable[[], bool]
    ) -> None:
        """POST a decision as the card's form does (a plain POST answered by a redirect)."""
        form = urlencode(
            {
                "label": rng.choice("01u"),
                "wording": rng.choice("abn"),
                "quote": rng.choice(CLAUSES),
                "note": note,
                "csrfmiddlewaretoken": self.csrf,
            }
        )
        cookie = self.base["Cookie"] + (f"; csrftoken={self.csrf}" if self.csrf else "")
        url = reverse("labeling:review_submit", args=[task_id]) + self.query
        headers = {
            **self.base,
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self.conn, response, _raw, took = _send(self.conn, "POST", url, form, headers)
        if response.status != 302:
            self.timings.errors.append(f"POST {url}: {response.status}")
        elif measured():
            self.timings.save.append(took)


def _report(
    timings: Timings, options: dict[str, Any], reviewers: int, elapsed: float, web_cpu: float
) -> dict[str, Any]:
    return {
        "reviewers": reviewers,
        "whole_queue_reviewers": reviewers - reviewers // 2 if options["whole_queue"] else 0,
        "think_ms": options["think_ms"],
        "server": f"gunicorn {options['workers']} workers x {options['threads']} threads, "
        f"keep-alive {options['keepalive'] or 'off'}",
        "conn_max_age": str(settings.DATABASES["default"].get("CONN_MAX_AGE", 0))
        if options["conn_max_age"] is None
        else str(options["conn_max_age"]),
        "measured_seconds": round(elapsed, 1),
        "next_task_requests": len(timings.next_task),
        "next_task_p50_ms": _percentile(timings.next_task, 0.50),
        "next_task_p95_ms": _percentile(timings.next_task, 0.95),
        "next_task_p99_ms": _percentile(timings.next_task, 0.99),
        "saves": len(timings.save),
        "save_p50_ms": _percentile(timings.save, 0.50),
        "save_p95_ms": _percentile(timings.save, 0.95),
        "save_p99_ms": _percentile(timings.save, 0.99),
        "decisions_per_second": round(len(timings.save) / elapsed, 1) if elapsed else None,
        # CPU the web processes spent per request (next task or save), whatever the wait:
        # what a request costs on an idle machine, without the database's share.
        "web_cpu_ms_per_request": round(
            1000 * web_cpu / max(1, len(timings.next_task) + len(timings.save)), 1
        ),
        "empty_queue_answers": timings.empty,
        "errors": len(timings.errors),
    }


class Command(BaseCommand):
    help = "Review queue under 20 concurrent reviewers with a long history; prints JSON lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--labels",
            default=None,
            help="comma-separated history sizes in labels, built one on top of the other "
            "(default 100000,1000000,5000000)",
        )
        parser.add_argument(
            "--set-factor",
            type=float,
            default=None,
            help="items stored per item a job labels (default: PostgreSQL 1, SQLite 3.25)",
        )
        parser.add_argument("--reviewers", type=int, default=20)
        parser.add_argument("--seconds", type=float, default=40.0, help="measured per size")
        parser.add_argument("--warmup", type=float, default=8.0, help="not measured, per size")
        parser.add_argument(
            "--think-ms", type=float, default=1000.0, help="a reviewer's mean pause per task"
        )
        parser.add_argument("--port", type=int, default=17310)
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="gunicorn processes (default: gunicorn.conf.py)",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="threads a process (default: gunicorn.conf.py)",
        )
        parser.add_argument(
            "--settle-seconds",
            type=float,
            default=900.0,
            help="longest wait for autovacuum/autoanalyze after each build step (PostgreSQL)",
        )
        parser.add_argument(
            "--conn-max-age",
            type=int,
            default=None,
            help="DATABASE_CONN_MAX_AGE for the server (default: as in the environment)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        defaults = DEFAULTS.get(connection.vendor)
        if defaults is None:
            raise CommandError(
                f"bench_queue runs on PostgreSQL or SQLite, not {connection.vendor}."
            )
        for name, value in defaults.items():
            if options.get(name) is None:
                options[name] = value
        options["workers"], options["threads"], options["keepalive"] = _shape(options)
        try:
            sizes = sorted(int(s) for s in str(options["labels"]).split(",") if s.strip())
        except ValueError as exc:
            raise CommandError(f"--labels takes numbers separated by commas: {exc}") from exc
        history = start_history(options["reviewers"], options["set_factor"])
        results: list[dict[str, Any]] = []
        try:
            for size in sizes:
                result = self._one_size(history, size, options)
                results.append(result)
                self.stdout.write(json.dumps(result, sort_keys=True))
                self.stdout.flush()
        finally:
            clean(history)
        if len(results) > 1:
            p95s = [r["next_task_p95_ms"] for r in results if r["next_task_p95_ms"]]
            growth = {
                "benchmark": "review_queue_growth",
                "database": connection.vendor,
                "labels": [r["labels"] for r in results],
                "next_task_p95_ms": [r["next_task_p95_ms"] for r in results],
                "save_p95_ms": [r["save_p95_ms"] for r in results],
                "next_task_p95_max_over_min": round(max(p95s) / min(p95s), 2) if p95s else None,
            }
            self.stdout.write(json.dumps(growth, sort_keys=True))

    def _one_size(self, history: History, size: int, options: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        grow_to(history, size)
        built = time.perf_counter() - started
        settled = settle(options["settle_seconds"])
        result = self._measure(history, options)
        result.update(
            {
                "benchmark": "review_queue",
                "database": connection.vendor,
                "labels": count(Label, history),
                "decisions": count(Decision, history),
                "open_tasks": ReviewTask.objects.filter(
                    job_id__in=history.jobs, status=ReviewStatus.OPEN
                ).count(),
                "items_stored": items_stored(),
                "jobs": len(history.jobs),
                "build_seconds": round(built, 1),
                "autovacuum" if connection.vendor == "postgresql" else "statistics": settled,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
            }
        )
        return result

    # --- measuring --------------------------------------------------------------------------

    def _server(self, options: dict[str, Any]) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if options["conn_max_age"] is not None:
            env["DATABASE_CONN_MAX_AGE"] = str(options["conn_max_age"])
        gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        process = subprocess.Popen(
            [
                gunicorn,
                "cope_studio.wsgi",
                "--bind",
                f"127.0.0.1:{options['port']}",
                "--workers",
                str(options["workers"]),
                "--threads",
                str(options["threads"]),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=str(settings.BASE_DIR),
            start_new_session=True,
        )
        # Ready when every worker has booted and answers (the login page needs no session).
        deadline = time.monotonic() + 120
        answered = 0
        while time.monotonic() < deadline and answered < 3 * options["workers"]:
            if process.poll() is not None:
                raise CommandError(f"gunicorn exited with {process.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", options["port"], timeout=30)
                conn.request("GET", reverse("login"), headers={"Host": "127.0.0.1"})
                answered += conn.getresponse().status == 200
                conn.close()
            except OSError:
                time.sleep(0.5)
        if answered:
            return process
        self._stop(process)
        raise CommandError("gunicorn did not answer within 120 s")

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _measure(self, history: History, options: dict[str, Any]) -> dict[str, Any]:
        cookies = []
        for user in history.reviewers:
            client = Client()
            client.force_login(user)
            cookies.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
        options["whole_queue"] = not (
            ReviewTask.objects.exclude(job_id__in=history.jobs)
            .exclude(status=ReviewStatus.RESOLVED)
            .exists()
        )
        server = self._server(options)
        timings = Timings()
        stop = threading.Event()
        measuring = threading.Event()
        try:
            threads = [
                threading.Thread(
                    target=self._reviewer,
                    args=(i, cookie, history, options, timings, stop, measuring),
                    daemon=True,
                )
                for i, cookie in enumerate(cookies)
            ]
            for thread in threads:
                thread.start()
            time.sleep(options["warmup"])
            measuring.set()
            cpu_before = _tree_cpu_seconds(server.pid)
            started = time.perf_counter()
            time.sleep(options["seconds"])
            stop.set()
            elapsed = time.perf_counter() - started
            web_cpu = _tree_cpu_seconds(server.pid) - cpu_before
            for thread in threads:
                thread.join(timeout=60)
        finally:
            self._stop(server)
        if timings.errors:
            self.stderr.write(f"{len(timings.errors)} errors, first: {timings.errors[0]}")
        return _report(timings, options, len(cookies), elapsed, web_cpu)

    def _reviewer(
        self,
        index: int,
        session: str,
        history: History,
        options: dict[str, Any],
        timings: Timings,
        stop: threading.Event,
        measuring: threading.Event,
    ) -> None:
        """One reviewer: next task (htmx GET), think, save (the form's plain POST)."""
        rng = random.Random(index)
        # Half work on one policy's queue, half on the whole queue, unless the database holds
        # other people's open tasks: a benchmark never decides a real mismatch.
        whole_queue = options["whole_queue"] and index >= len(history.reviewers) // 2
        query = (
            ""
            if whole_queue
            else "?" + urlencode({"policy": history.policies[index % POLICIES].pk})
        )
        client = _ReviewerClient(options["port"], session, query, timings)

        def measured() -> bool:
            return measuring.is_set() and not stop.is_set()

        think = options["think_ms"] / 1000
        try:
            while not stop.is_set():
                task_id = client.next_task(measured)
                if task_id is None:
                    time.sleep(1)
                    continue
                if think:
                    stop.wait(rng.uniform(0.5 * think, 1.5 * think))
                if stop.is_set():
                    break
                client.decide(task_id, rng, f"bench note from reviewer {index}", measured)
        except Exception as exc:  # noqa: BLE001 - reported in the result
            timings.errors.append(f"reviewer {index}: {exc!r}")
        finally:
            client.conn.close()
