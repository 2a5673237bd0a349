"""``manage.py bench_queue``: the review queue with months of history and 20 reviewers at once.

It builds a history the way a team makes one: 10 policies, each with versions and several
binocular jobs (reruns under the same texts included) over growing sample sets; every label
stored; mismatches as review tasks, most of them decided with quotes and notes (reruns' decisions
carried over), gold labels, and open tasks spread across the jobs. At each size of
``--labels`` (default 100,000 / 1,000,000 / 5,000,000, built one on top of the other) it waits for
PostgreSQL's own autovacuum and autoanalyze to catch up (it never runs VACUUM or ANALYZE
itself), starts the web app in a real server process (gunicorn, as deployed: 3 workers × 4
threads), and lets ``--reviewers`` client threads, each logged in as its own reviewer, loop:
GET the next task (the htmx request the page makes), think, POST the decision. It prints
p50/p95/p99 of the whole next-task request and of the decision save, one JSON line per size,
then a growth line. Everything it created is deleted afterwards.

PostgreSQL only: the rows are generated inside the database (``INSERT ... SELECT``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.models import (
    Decision,
    GoldLabel,
    GoldSource,
    Item,
    Job,
    JobStatus,
    Label,
    ReviewStatus,
    ReviewTask,
    SampleSet,
)
from policies.models import Policy, Version
from policies.roles import REVIEWER, ensure_roles

DEFAULT_SIZES = "100000,1000000,5000000"
POLICIES = 10
JOBS_PER_STAGE = 5  # per policy and size step: v, its rerun, v+1, v+2, v+2's rerun
RERUNS = (1, 4)  # which of those jobs rerun the previous one under the same texts
MISMATCH_PCT = 44  # % of items whose A and B labels differ in a job
DECIDED_PCT = 40  # % of items whose mismatch is already decided (the rest are open tasks)
CLAUSES = [
    f"{verb} {noun}"
    for verb in ("targets", "mocks", "threatens", "dehumanises", "praises")
    for noun in (
        "a protected group",
        "a person's religion",
        "a nationality",
        "someone's disability",
        "an ethnic group",
        "a gender",
        "a sexual orientation",
        "a public figure",
        "a named user",
        "a caste",
    )
]
TABLES = (Item, Label, ReviewTask, Decision, GoldLabel)


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


def _table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _insert_select(
    model: type[models.Model],
    exprs: dict[str, str | tuple[str, list[Any]]],
    tail: str,
    params: list[Any],
) -> int:
    """``INSERT INTO <model> (...) SELECT <exprs> <tail>``; other columns get their defaults.

    Built from the model's fields so a column added later does not break the benchmark.
    ``exprs`` maps a column to SQL, or to SQL and its parameters.
    """
    columns: list[str] = []
    selects: list[str] = []
    args: list[Any] = []
    for fld in model._meta.concrete_fields:
        if fld.primary_key:
            continue
        columns.append(connection.ops.quote_name(fld.column))
        expr = exprs.get(fld.column)
        if isinstance(expr, tuple):
            selects.append(expr[0])
            args.extend(expr[1])
        elif expr is not None:
            selects.append(expr)
        elif getattr(fld, "auto_now", False) or getattr(fld, "auto_now_add", False):
            selects.append("now()")
        else:
            selects.append("%s")
            default = fld.get_default() if fld.has_default() or not fld.null else None
            args.append(fld.get_db_prep_save(default, connection))
    sql = f"INSERT INTO {_table(model)} ({', '.join(columns)}) SELECT {', '.join(selects)} {tail}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*args, *params])
        return cursor.rowcount


@dataclass
class History:
    tag: str
    author: Any
    reviewers: list[Any]
    policies: list[Policy] = field(default_factory=list)
    versions: dict[int, list[Version]] = field(default_factory=dict)
    sample_sets: list[int] = field(default_factory=list)
    jobs: list[int] = field(default_factory=list)
    stage: int = 0
    content_seed: int = 0


@dataclass
class Timings:
    next_task: list[float] = field(default_factory=list)
    save: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    empty: int = 0


class Command(BaseCommand):
    help = "Review queue under 20 concurrent reviewers with a long history; prints JSON lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--labels",
            default=DEFAULT_SIZES,
            help="comma-separated history sizes in labels, built one on top of the other",
        )
        parser.add_argument("--reviewers", type=int, default=20)
        parser.add_argument("--seconds", type=float, default=40.0, help="measured per size")
        parser.add_argument("--warmup", type=float, default=8.0, help="not measured, per size")
        parser.add_argument(
            "--think-ms", type=float, default=1000.0, help="a reviewer's mean pause per task"
        )
        parser.add_argument("--port", type=int, default=17310)
        parser.add_argument("--workers", type=int, default=3)
        parser.add_argument("--threads", type=int, default=4)
        parser.add_argument(
            "--settle-seconds",
            type=float,
            default=900.0,
            help="longest wait for autovacuum/autoanalyze after each build step",
        )
        parser.add_argument(
            "--conn-max-age",
            type=int,
            default=None,
            help="DATABASE_CONN_MAX_AGE for the server (default: as in the environment)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("bench_queue needs PostgreSQL (DATABASE_URL=postgresql://...).")
        try:
            sizes = sorted(int(s) for s in str(options["labels"]).split(",") if s.strip())
        except ValueError as exc:
            raise CommandError(f"--labels takes numbers separated by commas: {exc}") from exc
        history = self._start_history(options["reviewers"])
        results: list[dict[str, Any]] = []
        try:
            for size in sizes:
                started = time.perf_counter()
                self._grow_to(history, size)
                built = time.perf_counter() - started
                settled = self._wait_for_autovacuum(options["settle_seconds"])
                result = self._measure(history, options)
                result.update(
                    {
                        "benchmark": "review_queue",
                        "labels": self._count(Label, history),
                        "decisions": self._count(Decision, history),
                        "open_tasks": ReviewTask.objects.filter(
                            job_id__in=history.jobs, status=ReviewStatus.OPEN
                        ).count(),
                        "jobs": len(history.jobs),
                        "build_seconds": round(built, 1),
                        "autovacuum": settled,
                        "load_average": [round(x, 2) for x in os.getloadavg()],
                        "cpus": os.cpu_count(),
                    }
                )
                results.append(result)
                self.stdout.write(json.dumps(result, sort_keys=True))
                self.stdout.flush()
        finally:
            self._clean(history)
        if len(results) > 1:
            p95s = [r["next_task_p95_ms"] for r in results if r["next_task_p95_ms"]]
            growth = {
                "benchmark": "review_queue_growth",
                "labels": [r["labels"] for r in results],
                "next_task_p95_ms": [r["next_task_p95_ms"] for r in results],
                "save_p95_ms": [r["save_p95_ms"] for r in results],
                "next_task_p95_max_over_min": round(max(p95s) / min(p95s), 2) if p95s else None,
            }
            self.stdout.write(json.dumps(growth, sort_keys=True))

    # --- building the history ---------------------------------------------------------------

    def _start_history(self, reviewers: int) -> History:
        tag = f"bench-queue-{uuid.uuid4().hex[:8]}"
        User = get_user_model()
        author = User.objects.create_user(username=f"{tag}-author")
        users = [User.objects.create_user(username=f"{tag}-r{i:02d}") for i in range(reviewers)]
        ensure_roles()
        group = Group.objects.get(name=REVIEWER)
        for user in users:
            user.groups.add(group)
        history = History(tag=tag, author=author, reviewers=users)
        for p in range(POLICIES):
            policy = Policy.objects.create(name=f"{tag} policy {p}", created_by=author)
            history.policies.append(policy)
            history.versions[policy.pk] = []
        return history

    def _new_version(self, history: History, policy: Policy) -> Version:
        number = len(history.versions[policy.pk]) + 1
        body = " ".join(f"Clause {i}: content that {CLAUSES[i % len(CLAUSES)]}." for i in range(60))
        version = Version.objects.create(
            policy=policy,
            number=number,
            text=f"# {policy.name} v{number}\n\n## Overview\n\n{body}\n",
            twin_text=f"# {policy.name} v{number} (twin)\n\n## Overview\n\nReworded: {body}\n",
            author=history.author,
            change_note="" if number == 1 else "bench revision",
        )
        history.versions[policy.pk].append(version)
        return version

    def _grow_to(self, history: History, labels: int) -> None:
        """Add one step of history: per policy a new sample set and five jobs on it."""
        have = self._count(Label, history)
        if labels <= have:
            return
        per_job_items = max(1, (labels - have) // (2 * POLICIES * JOBS_PER_STAGE))
        history.stage += 1
        with transaction.atomic():
            for policy in history.policies:
                self._grow_policy(history, policy, per_job_items)
        history.content_seed += per_job_items

    def _grow_policy(self, history: History, policy: Policy, n: int) -> None:
        sample_set = SampleSet.objects.create(
            name=f"{history.tag} set {policy.pk}-{history.stage}",
            created_by=history.author,
            item_count=n,
        )
        history.sample_sets.append(sample_set.pk)
        # Contents repeat across policies' sets (the same post sampled for several policies,
        # about three each), which is what makes earlier decisions on the same content show up.
        base = history.content_seed
        shift = history.policies.index(policy) * max(1, n // 3)
        cid = f"({int(base)} + mod(g + {int(shift)}, {int(n)}))"
        _insert_select(
            Item,
            {
                "sample_set_id": str(int(sample_set.pk)),
                "external_id": "'row-' || g",
                "text": (
                    f"'user post ' || {cid} || ': ' || repeat(md5({cid}::text), 1 + mod({cid}, 5))"
                    " || ' and some words about it'"
                ),
                "content_hash": f"md5({cid}::text) || md5(({cid} + 1)::text)",
                "row_number": "g",
            },
            "FROM generate_series(1, %s) AS g",
            [n],
        )
        jobs: list[Job] = []
        version = None
        for k in range(JOBS_PER_STAGE):
            if k not in RERUNS or version is None:
                version = self._new_version(history, policy)
            jobs.append(
                Job.objects.create(
                    version=version,
                    sample_set=sample_set,
                    status=JobStatus.SUCCEEDED,
                    text_a=version.text,
                    text_b=version.twin_text,
                    item_count=n,
                    created_by=history.author,
                    started_at=timezone.now(),
                    finished_at=timezone.now(),
                    stats={"n": n, "p_o": 1 - MISMATCH_PCT / 100},
                )
            )
        history.jobs.extend(j.pk for j in jobs)
        job_ids = ",".join(str(int(j.pk)) for j in jobs)
        reruns = ",".join(str(int(jobs[k].pk)) for k in RERUNS)
        # Per item: A says 1 for a third of them; B differs on MISMATCH_PCT% of items.
        bucket = "mod(i.row_number * 37 + j.id, 100)"
        said_one = "(mod(i.row_number, 3) = 0)"
        mismatch = f"({bucket} < {MISMATCH_PCT})"
        says_one = f"({said_one} <> ({mismatch} AND s.side = 'B'))"
        _insert_select(
            Label,
            {
                "job_id": "j.id",
                "item_id": "i.id",
                "side": "s.side",
                "label": f"CASE WHEN {says_one} THEN 1 ELSE 0 END",
                "p1": f"CASE WHEN {says_one} THEN 0.8 ELSE 0.2 END",
            },
            f"FROM {_table(Item)} i CROSS JOIN {_table(Job)} j "
            "CROSS JOIN (VALUES ('A'), ('B')) AS s(side) "
            f"WHERE i.sample_set_id = %s AND j.id IN ({job_ids})",
            [sample_set.pk],
        )
        said = f"(CASE WHEN {said_one} THEN 1 ELSE 0 END)"
        decided = f"({bucket} < {DECIDED_PCT})"
        _insert_select(
            ReviewTask,
            {
                "job_id": "j.id",
                "item_id": "i.id",
                "policy_id": str(int(policy.pk)),
                "label_a": said,
                "label_b": f"1 - {said}",
                "p1_a": f"0.2 + 0.6 * {said}",
                "p1_b": f"0.8 - 0.6 * {said}",
                "status": f"CASE WHEN {decided} THEN 'resolved' ELSE 'open' END",
                "resolved_at": f"CASE WHEN {decided} THEN now() END",
                "carried_over": f"({decided} AND j.id IN ({reruns}))",
            },
            f"FROM {_table(Item)} i CROSS JOIN {_table(Job)} j "
            f"WHERE i.sample_set_id = %s AND j.id IN ({job_ids}) AND {mismatch} "
            "ORDER BY j.id, i.id",
            [sample_set.pk],
        )
        reviewer_ids = [u.pk for u in history.reviewers]
        clauses = CLAUSES + [""] * 10  # some decisions quote nothing
        _insert_select(
            Decision,
            {
                "task_id": "t.id",
                "reviewer_id": (
                    "(%s::int[])[1 + mod(t.id, %s)]",
                    [reviewer_ids, len(reviewer_ids)],
                ),
                "label": "CASE mod(t.id, 3) WHEN 0 THEN '0' WHEN 1 THEN '1' ELSE 'u' END",
                "wording": "CASE mod(t.id, 3) WHEN 0 THEN 'a' WHEN 1 THEN 'b' ELSE 'n' END",
                "quote": ("(%s::text[])[1 + mod(t.id * 7, %s)]", [clauses, len(clauses)]),
                "note": "'Reviewer note ' || t.id || ': ' || md5(t.id::text)",
            },
            f"FROM {_table(ReviewTask)} t WHERE t.job_id IN ({job_ids}) AND t.status = 'resolved'",
            [],
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_table(GoldLabel)} (policy_id, item_id, label, decision_id, "
                "decided_by_id, updated_at, source) "
                "SELECT DISTINCT ON (t.item_id) t.policy_id, t.item_id, d.label, d.id, "
                f"d.reviewer_id, now(), %s FROM {_table(Decision)} d "
                f"JOIN {_table(ReviewTask)} t ON t.id = d.task_id "
                f"WHERE t.job_id IN ({job_ids}) ORDER BY t.item_id, d.id DESC "
                "ON CONFLICT DO NOTHING",
                [GoldSource.REVIEW],
            )

    def _count(self, model: type[models.Model], history: History) -> int:
        if not history.jobs:
            return 0
        if model is Decision:
            return Decision.objects.filter(task__job_id__in=history.jobs).count()
        return model.objects.filter(job_id__in=history.jobs).count()  # type: ignore[attr-defined]

    def _wait_for_autovacuum(self, limit: float) -> dict[str, Any]:
        """Bring the bulk tables to the state a running server's are in: vacuumed and analyzed.

        With autovacuum on (PostgreSQL's default), wait until it has vacuumed and analyzed
        every bulk table since the build: a live server reaches that state by itself within
        minutes of a big job. With autovacuum off on this server, run plain ``ANALYZE`` (what
        autoanalyze would have done), never ``VACUUM``; the output says which happened.
        """
        names = [m._meta.db_table for m in TABLES]
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            autovacuum = cursor.fetchone()[0] == "on"
        if not autovacuum:
            started = time.perf_counter()
            with connection.cursor() as cursor:
                for name in names:
                    cursor.execute(f"ANALYZE {connection.ops.quote_name(name)}")
            return {
                "autovacuum": "off on this server",
                "done_by_bench": "ANALYZE (no VACUUM)",
                "seconds": round(time.perf_counter() - started),
            }
        since = timezone.now()
        started = time.perf_counter()
        pending = names
        while time.perf_counter() - started < limit:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) AND ("
                    "coalesce(greatest(last_autoanalyze, last_analyze), '-infinity') < %s OR "
                    "coalesce(greatest(last_autovacuum, last_vacuum), '-infinity') < %s)",
                    [names, since, since],
                )
                pending = [row[0] for row in cursor.fetchall()]
            if not pending:
                break
            time.sleep(5)
        return {
            "autovacuum": "on",
            "waited_seconds": round(time.perf_counter() - started),
            "not_done": pending,
        }

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
        return {
            "reviewers": len(cookies),
            "whole_queue_reviewers": len(cookies) - len(cookies) // 2
            if options["whole_queue"]
            else 0,
            "think_ms": options["think_ms"],
            "server": f"gunicorn {options['workers']} workers x {options['threads']} threads",
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
        conn = http.client.HTTPConnection("127.0.0.1", options["port"], timeout=60)
        csrf = ""
        base = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}", "Host": "127.0.0.1"}
        queue_url = reverse("labeling:queue") + query
        try:
            while not stop.is_set():
                conn, response, raw, took = _send(
                    conn, "GET", queue_url, None, {**base, "HX-Request": "true"}
                )
                body = raw.decode()
                for header, value in response.getheaders():
                    if header.lower() == "set-cookie" and value.startswith("csrftoken="):
                        csrf = value.split(";", 1)[0].split("=", 1)[1]
                if response.status != 200:
                    timings.errors.append(f"GET {queue_url}: {response.status}")
                    time.sleep(1)
                    continue
                if measuring.is_set() and not stop.is_set():
                    timings.next_task.append(took)
                match = re.search(r'data-task-id="(\d+)"', body)
                if match is None:
                    timings.empty += 1
                    time.sleep(1)
                    continue
                if not csrf:
                    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
                    csrf = token.group(1) if token else ""
                think = options["think_ms"] / 1000
                if think:
                    stop.wait(rng.uniform(0.5 * think, 1.5 * think))
                if stop.is_set():
                    break
                form = urlencode(
                    {
                        "label": rng.choice("01u"),
                        "wording": rng.choice("abn"),
                        "quote": rng.choice(CLAUSES),
                        "note": f"bench note from reviewer {index}",
                        "csrfmiddlewaretoken": csrf,
                    }
                )
                cookie = base["Cookie"] + (f"; csrftoken={csrf}" if csrf else "")
                url = reverse("labeling:review_submit", args=[int(match.group(1))]) + query
                conn, response, _raw, took = _send(
                    conn,
                    "POST",
                    url,
                    form,
                    {
                        **base,
                        "Cookie": cookie,
                        "Content-Type": "application/x-www-form-urlencoded",
                    },
                )
                if response.status != 302:
                    timings.errors.append(f"POST {url}: {response.status}")
                elif measuring.is_set() and not stop.is_set():
                    timings.save.append(took)
        except Exception as exc:  # noqa: BLE001 - reported in the result
            timings.errors.append(f"reviewer {index}: {exc!r}")
        finally:
            conn.close()

    # --- cleaning up --------------------------------------------------------------------------

    def _clean(self, history: History) -> None:
        # Plain DELETEs for the bulk tables: the ORM's cascade would load millions of rows.
        jobs = history.jobs or [0]
        sets = history.sample_sets or [0]
        policies = [p.pk for p in history.policies] or [0]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {_table(GoldLabel)} WHERE policy_id = ANY(%s)", [policies])
            cursor.execute(
                f"DELETE FROM {_table(Decision)} WHERE task_id IN "
                f"(SELECT id FROM {_table(ReviewTask)} WHERE job_id = ANY(%s))",
                [jobs],
            )
            cursor.execute(f"DELETE FROM {_table(ReviewTask)} WHERE job_id = ANY(%s)", [jobs])
            cursor.execute(f"DELETE FROM {_table(Label)} WHERE job_id = ANY(%s)", [jobs])
            Job.objects.filter(pk__in=jobs).delete()
            cursor.execute(f"DELETE FROM {_table(Item)} WHERE sample_set_id = ANY(%s)", [sets])
            SampleSet.objects.filter(pk__in=sets).delete()
            Version.objects.filter(policy_id__in=policies).delete()
            Policy.objects.filter(pk__in=policies).delete()
            users = [history.author.pk, *(u.pk for u in history.reviewers)]
            get_user_model().objects.filter(pk__in=users).delete()
