"""Model worker heartbeats: stored by name, newest wins; the Workers page; the job page's hint
when nobody serves the gpu queue; and real workers whose heartbeats arrive, then stop."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from typing import Any

import psutil
import pytest
from django.urls import reverse
from django.utils import timezone

from labeling.jobs import broker, services
from labeling.models import Job, WorkerHeartbeat
from labeling.workers.services import list_workers, queue_status, record_heartbeat
from tests.conftest import PASSWORD
from tests.labeling.conftest import TEXTS, make_sample_set, make_version, retry_locked, wait_for
from worker.contract import Heartbeat


def beat(name: str = "gpu@box-1", **changes: Any) -> Heartbeat:
    fields: dict[str, Any] = {
        "name": name,
        "hostname": "box-1",
        "pid": 4242,
        "queues": ["gpu"],
        "state": "ready",
        "backend": "cope",
        "model_id": "google/gemma-2-9b + zentropi-ai/cope-a-9b",
        "model_revision": "abc123",
        "device": "cuda:0 (NVIDIA H200)",
        "memory_bytes": 19_000_000_000,
        "memory_kind": "gpu",
        "job_id": None,
        "chunk_id": None,
        "side": "",
        "task": "",
        "error": "",
        "sent_at": time.time(),
    }
    fields.update(changes)
    return Heartbeat(**fields)


@pytest.mark.django_db
def test_heartbeat_upserts_by_name_and_a_late_older_one_changes_nothing() -> None:
    now = time.time()
    assert record_heartbeat(beat(sent_at=now - 10, state="starting"))
    assert record_heartbeat(beat(sent_at=now, state="busy", job_id=7, chunk_id=3, side="A"))
    assert not record_heartbeat(beat(sent_at=now - 5, state="ready"))  # arrived late
    row = WorkerHeartbeat.objects.get()
    assert (row.state, row.job_id, row.chunk_id, row.side) == ("busy", 7, 3, "A")
    assert row.queues == "gpu" and row.memory_bytes == 19_000_000_000


@pytest.mark.django_db
def test_heartbeat_round_trips_the_contract() -> None:
    sent = beat(job_id=12)
    assert Heartbeat.from_dict(sent.to_dict()) == sent


@pytest.mark.django_db
def test_worker_silent_past_the_limit_is_down(settings: Any) -> None:
    settings.COPE_WORKER_DOWN_AFTER_SECONDS = 60
    record_heartbeat(beat("gpu@fresh"))
    record_heartbeat(beat("gpu@stale"))
    WorkerHeartbeat.objects.filter(name="gpu@stale").update(
        last_seen=timezone.now() - timedelta(seconds=61)
    )
    rows, total = list_workers()
    assert total == 2
    assert {r.beat.name: r.status for r in rows} == {"gpu@fresh": "ready", "gpu@stale": "down"}
    status = queue_status("gpu")
    assert status.serving == 1 and not status.nobody


@pytest.mark.django_db
def test_workers_silent_for_a_week_are_forgotten_when_a_new_one_reports() -> None:
    record_heartbeat(beat("gpu@old-container"))
    record_heartbeat(beat("gpu@last-week"))
    WorkerHeartbeat.objects.filter(name="gpu@old-container").update(
        last_seen=timezone.now() - timedelta(days=8)
    )
    WorkerHeartbeat.objects.filter(name="gpu@last-week").update(
        last_seen=timezone.now() - timedelta(days=6)
    )
    record_heartbeat(beat("gpu@new-container"))
    names = set(WorkerHeartbeat.objects.values_list("name", flat=True))
    assert names == {"gpu@last-week", "gpu@new-container"}


@pytest.mark.django_db
def test_workers_page_for_authors_and_admins_not_reviewers(
    client: Any, author: Any, admin_user: Any, reviewer: Any
) -> None:
    record_heartbeat(beat(job_id=None))
    WorkerHeartbeat.objects.create(
        name="gpu@gone",
        state="ready",
        queues="gpu",
        sent_at=timezone.now(),
        first_seen=timezone.now(),
        last_seen=timezone.now() - timedelta(minutes=5),
    )
    url = reverse("labeling:workers")
    for user in (author, admin_user):
        client.login(username=user.username, password=PASSWORD)
        page = client.get(url).content.decode()
        assert "gpu@box-1" in page and "cuda:0 (NVIDIA H200)" in page and "17.7\xa0GB" in page
        assert 'data-worker="gpu@gone"' in page and ">down</span>" in page
        fragment = client.get(url, headers={"HX-Request": "true"}).content.decode()
        assert fragment.lstrip().startswith('<div id="worker-table"') and "<html" not in fragment
    client.login(username=reviewer.username, password=PASSWORD)
    assert client.get(url).status_code == 403
    client.logout()
    assert client.get(url).status_code == 302


@pytest.mark.django_db
def test_worker_error_is_escaped_on_the_page(client: Any, author: Any) -> None:
    record_heartbeat(beat(state="error", error="<script>alert(1)</script>"))
    client.login(username=author.username, password=PASSWORD)
    page = client.get(reverse("labeling:workers")).content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


@pytest.fixture
def queued_job(
    author: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> Job:
    monkeypatch.setattr(broker, "send_score_request", lambda request: None)
    with django_capture_on_commit_callbacks(execute=True):
        return services.start_job(
            version=make_version(author),
            sample_set=make_sample_set(author, TEXTS),
            sample_size=None,
            by=author,
        )


@pytest.mark.django_db
def test_job_page_says_when_no_worker_serves_the_gpu_queue(
    client: Any, author: Any, queued_job: Job
) -> None:
    client.login(username=author.username, password=PASSWORD)
    url = reverse("labeling:job_detail", args=[queued_job.pk])

    def fragment() -> str:
        return str(client.get(url, headers={"HX-Request": "true"}).content.decode())

    assert 'id="no-gpu-worker"' in fragment() and "No model worker" in fragment()
    record_heartbeat(beat("default@box", queues=["default"]))  # not a gpu worker
    assert "No model worker" in fragment()
    record_heartbeat(beat("gpu@box-1", state="starting"))
    assert "still loading its model" in fragment()
    record_heartbeat(beat("gpu@box-1", state="error", error="COPE_BASE_MODEL is missing"))
    assert "could not load its model: COPE_BASE_MODEL is missing" in fragment()
    record_heartbeat(beat("gpu@box-1", state="ready"))
    assert 'id="no-gpu-worker"' not in fragment() and "still loading" not in fragment()


# Real workers ----------------------------------------------------------------------------------


def _page(client: Any) -> str:
    return str(retry_locked(lambda: client.get(reverse("labeling:workers")).content.decode()))


def _row(name: str) -> WorkerHeartbeat | None:
    return WorkerHeartbeat.objects.filter(name=name).first()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_real_worker_heartbeat_arrives_and_a_silent_worker_shows_as_down(
    celery_workers: Any, client: Any, author: Any, settings: Any
) -> None:
    """The session's GPU worker reports (every 10 s by default); frozen with SIGSTOP, as a hung
    worker would be, it falls silent and the page marks it down; thawed, it is back."""
    if not celery_workers.redis_url:
        pytest.skip(
            "PostgreSQL only: with SQLite the web-side worker is a thread sharing the test's "
            "in-memory database, and the session's GPU worker sends no heartbeats"
        )
    settings.COPE_WORKER_DOWN_AFTER_SECONDS = 60
    client.login(username=author.username, password=PASSWORD)
    gpu = celery_workers.procs["gpu"]

    def worker_pids() -> set[int]:
        # The prefork pool's child loads the model and runs the tasks: it sends the heartbeats.
        return {gpu.pid, *(c.pid for c in psutil.Process(gpu.pid).children())}

    wait_for(
        lambda: WorkerHeartbeat.objects.filter(state="ready", pid__in=worker_pids()).exists(),
        timeout=60,
        what="a heartbeat from the real gpu worker",
        workers=celery_workers,
    )
    row = WorkerHeartbeat.objects.get(pid__in=worker_pids())
    assert row.name.startswith("gpu") and "@" in row.name, row.name
    assert set(row.queues.split(",")) == {"gpu_live", "gpu"}
    assert row.backend == "embedding" and row.weak and row.model_id and row.device == "cpu"
    assert row.memory_kind == "rss" and (row.memory_bytes or 0) > 10_000_000
    page = _page(client)
    assert f'data-worker="{row.name}"' in page and ">ready</span>" in page
    assert "weak baseline" in page
    assert not queue_status("gpu").nobody

    def shown_as(status: str) -> bool:
        page = _page(client)
        start = page.find(f'data-worker="{row.name}"')
        return start >= 0 and f">{status}</span>" in page[start : page.find("</tr>", start)]

    os.kill(row.pid, signal.SIGSTOP)
    frozen_at = timezone.now()
    try:
        settings.COPE_WORKER_DOWN_AFTER_SECONDS = 3  # no need to wait a minute here
        wait_for(lambda: shown_as("down"), timeout=40, what="the silent worker shown as down")
        assert queue_status("gpu").nobody
    finally:
        os.kill(row.pid, signal.SIGCONT)
    settings.COPE_WORKER_DOWN_AFTER_SECONDS = 60
    wait_for(
        lambda: WorkerHeartbeat.objects.filter(pk=row.pk, last_seen__gt=frozen_at).exists(),
        timeout=60,
        what="a heartbeat after SIGCONT",
        workers=celery_workers,
    )
    assert shown_as("ready")
