"""Measure the labeling API: one-item and 64-item requests, and its overhead over model time.

``python manage.py bench_api`` creates a policy with a finalized version (the demo hate-speech
policy) and an API key in the configured database, starts a real model worker subprocess on a
temporary broker (the embedded default's filesystem broker, or ``--broker redis``) and the web
app under gunicorn (``--port``), then sends ``--n`` one-item and ``--n-batch`` 64-item
``POST /api/v1/label`` requests over HTTP after a warm-up. Prints one JSON object: p50/p95 of the
client's latency, of the worker's model time (reported in each answer) and of their difference,
the API's own overhead (HTTP, key check, rate limit, broker, result backend). Everything it
created is deleted afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from labeling.api import keys as api_keys
from labeling.management.commands._live_bench import REPO, BrokerSetup, percentiles
from labeling.management.commands.bench_try import CONTENTS, texts
from labeling.models import ApiKey
from policies.models import Policy, Version, allow_record_deletion
from policies.roles import AUTHOR, ensure_roles
from worker.config import WorkerConfig

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
# A dropped connection seen on sending: the server closed the idle keep-alive connection.
_DROPPED = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class _Client:
    """One keep-alive HTTP connection to the server, as an API client would hold it."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if payload is not None:
            sent["Content-Type"] = "application/json"
        try:
            return self._send(method, path, payload, sent)
        except _DROPPED:
            self._conn.close()  # the next request opens a new connection
            return self._send(method, path, payload, sent)

    def _send(
        self, method: str, path: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        self._conn.request(method, path, body=payload, headers=headers)
        response = self._conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._conn.close()


class Command(BaseCommand):
    help = "p50/p95 of one-item and 64-item API label requests and the API's overhead."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--n", type=int, default=100)
        parser.add_argument("--n-batch", type=int, default=20)
        parser.add_argument("--broker", choices=["filesystem", "redis"], default="filesystem")
        parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
        parser.add_argument("--port", type=int, default=17201)

    def handle(self, *args: Any, **opts: Any) -> None:
        text, _twin = texts()
        ensure_roles()
        user = get_user_model().objects.create_user(username=f"bench-api-{os.getpid()}")
        user.groups.add(Group.objects.get(name=AUTHOR))
        policy = Policy.objects.create(name=f"Bench API {os.getpid()}", created_by=user)
        Version.objects.create(
            policy=policy, number=1, text=text, author=user, finalized_at=timezone.now()
        )
        secret = api_keys.create_key(owner=user, name="bench", scopes=["label"], by=user).secret
        try:
            with BrokerSetup(opts["broker"], opts["redis_url"]) as setup:
                report = self._run(setup, secret, policy.slug, opts)
        finally:
            ApiKey.objects.filter(owner=user).delete()
            with allow_record_deletion():  # the finalized version it made itself
                policy.delete()
            user.delete()
        self.stdout.write(json.dumps(report))

    def _run(self, setup: BrokerSetup, secret: str, slug: str, opts: dict[str, Any]) -> Any:
        env = {**setup.env(), "COPE_API_RATE_LIMIT": "1000000"}
        env.setdefault("DJANGO_SECRET_KEY", settings.SECRET_KEY)
        argv = [GUNICORN, "cope_studio.wsgi", "--bind", f"127.0.0.1:{opts['port']}"]
        # Processes and threads as gunicorn.conf.py sets them, as bin/run-studio and compose run.
        argv += ["--log-level", "warning", "--timeout", "600"]
        server = subprocess.Popen(argv, cwd=REPO, env=env)
        client = _Client(opts["port"])
        try:
            self._wait_up(client)
            one, batch = self._measure(client, secret, slug, opts)
        finally:
            client.close()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
        return {
            "benchmark": "bench_api",
            "broker": setup.kind,
            "backend": WorkerConfig.from_env().backend,
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "one_item": self._summary(one),
            "batch_64": self._summary(batch),
        }

    @staticmethod
    def _measure(
        client: _Client, secret: str, slug: str, opts: dict[str, Any]
    ) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]:
        """(latency, model time, server total) of each one-item and each 64-item request."""
        headers = {"Authorization": f"Bearer {secret}"}

        def call(contents: list[str]) -> tuple[float, float, float]:
            body = {"policy": slug, "contents": contents}
            started = time.perf_counter()
            status, answer = client.request("POST", "/api/v1/label", body=body, headers=headers)
            seconds = time.perf_counter() - started
            if status != 200:
                raise RuntimeError(f"{status}: {answer.decode(errors='replace')}")
            timing = json.loads(answer)["timing"]
            return seconds, timing["model_ms"] / 1000, timing["total_ms"] / 1000

        # The worker's pool child loads the model after the parent says "ready": wait for the
        # first answer before timing anything.
        deadline = time.monotonic() + 300
        while True:
            try:
                call(CONTENTS[:1])
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
        for _ in range(5):
            call(CONTENTS[:1])
            call((CONTENTS * 8)[:64])
        one = [call([CONTENTS[i % len(CONTENTS)]]) for i in range(opts["n"])]
        batch = [call((CONTENTS * 8)[:64]) for _ in range(opts["n_batch"])]
        return one, batch

    @staticmethod
    def _summary(rows: list[tuple[float, float, float]]) -> dict[str, Any]:
        return {
            "latency": percentiles([r[0] for r in rows]),
            "model_time": percentiles([r[1] for r in rows]),
            "overhead_latency_minus_model": percentiles([r[0] - r[1] for r in rows]),
            "server_total_minus_model": percentiles([r[2] - r[1] for r in rows]),
        }

    @staticmethod
    def _wait_up(client: _Client) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client.request("GET", "/api/v1/openapi.json")
                return
            except OSError:  # refused until gunicorn listens
                client.close()
                time.sleep(0.2)
        raise RuntimeError("the web server did not start")
