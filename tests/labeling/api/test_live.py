"""Live scoring: queue order, the round trip on the real worker, the Try box views, API keys."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from kombu import Connection, Consumer, Exchange, Producer, Queue

from labeling.api import keys as api_keys
from labeling.api import live
from labeling.models import ApiKey
from tests.conftest import PASSWORD, POLICY_TEXT
from tests.labeling.conftest import make_version
from worker.broker import TRANSPORT
from worker.celery_app import celery_settings
from worker.config import WorkerConfig

ABUSE = "You are a worthless idiot, Sam, and everyone hates you."


@pytest.fixture(autouse=True)
def _patient(settings: Any) -> None:
    # On a loaded test machine the embedding baseline can take seconds; the default 30 s wait
    # is for people, a failing test here should mean no answer, not a slow one.
    settings.COPE_LIVE_TIMEOUT = 120.0


CALM = "Lovely weather in Lisbon today."


def _options(root: Path) -> dict[str, Any]:
    for name in ("messages", "control", "processed"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(root / "messages"),
        "data_folder_out": str(root / "messages"),
        "control_folder": str(root / "control"),
        "processed_folder": str(root / "processed"),
        "store_processed": False,
        "polling_interval": 0.01,
    }


def _drain_order(transport: Any, root: Path, live: str, bulk: str) -> list[str]:
    """Publish 3 bulk messages, then 3 live ones; the queues each message is delivered from.
    (kombu keeps exchange state per transport class in the process: each run its own names.)"""
    queues = [Queue(n, Exchange(n, "direct"), routing_key=n) for n in (live, bulk)]
    got: list[str] = []
    with Connection("filesystem://", transport=transport, transport_options=_options(root)) as c:
        producer = Producer(c.default_channel)
        for name in (bulk, bulk, bulk, live, live, live):
            queue = next(q for q in queues if q.name == name)
            producer.publish(
                {"q": name}, exchange=queue.exchange, routing_key=name, declare=[queue]
            )
        with Consumer(
            c, queues=queues, callbacks=[lambda body, m: (got.append(body["q"]), m.ack())]
        ):
            while len(got) < 6:
                c.drain_events(timeout=20)  # generous: a loaded CI machine
    return got


def test_filesystem_workers_take_live_requests_first(tmp_path: Path) -> None:
    ordered = _drain_order(TRANSPORT, tmp_path / "o", "live-o", "bulk-o")
    assert ordered == ["live-o"] * 3 + ["bulk-o"] * 3
    # kombu's own transport takes turns between the queues: a live request waits behind bulk.
    stock = _drain_order("filesystem", tmp_path / "s", "live-s", "bulk-s")
    assert stock[:3] != ["live-s"] * 3


def _lost_messages(transport: Any, root: Path, name: str, count: int) -> tuple[int, int]:
    """A producer process publishes ``count`` large messages while a consumer polls as fast as
    it can; returns (messages received, consumer errors)."""
    import multiprocessing

    options = {**_options(root), "polling_interval": 0.0005}
    queue = Queue(name, Exchange(name, "direct"), routing_key=name)

    def produce() -> None:
        with Connection("filesystem://", transport=transport, transport_options=options) as c:
            producer = Producer(c.default_channel)
            for i in range(count):
                producer.publish(
                    {"i": i, "pad": "x" * 200_000},
                    exchange=queue.exchange,
                    routing_key=name,
                    declare=[queue],
                )
                time.sleep(0.002)

    got: set[int] = set()
    errors = 0
    with Connection("filesystem://", transport=transport, transport_options=options) as c:
        with Consumer(c, queues=[queue], callbacks=[lambda b, m: (got.add(b["i"]), m.ack())]):
            producer = multiprocessing.get_context("fork").Process(target=produce)
            producer.start()
            deadline = time.monotonic() + 60
            while len(got) < count and time.monotonic() < deadline:
                try:
                    c.drain_events(timeout=0.5)
                except TimeoutError:
                    if not producer.is_alive():
                        break
                except Exception:  # what a half-written message does to kombu's channel
                    errors += 1
            producer.join()
    return len(got), errors


def test_filesystem_broker_never_hands_out_a_half_written_message(tmp_path: Path) -> None:
    # kombu's own channel writes a message in place, so a fast consumer can take it empty or
    # half-written and lose it (live requests were lost so): worker.broker writes, then renames.
    assert _lost_messages(TRANSPORT, tmp_path / "o", "whole-o", 150) == (150, 0)


def test_a_removed_processed_folder_is_made_again(tmp_path: Path) -> None:
    import shutil

    queue = Queue("again", Exchange("again", "direct"), routing_key="again")
    options = _options(tmp_path)
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options) as c:
        producer = Producer(c.default_channel)
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key="again", declare=[queue])
        got: list[int] = []
        with Consumer(c, queues=[queue], callbacks=[lambda b, m: (got.append(b["n"]), m.ack())]):
            c.drain_events(timeout=5)
            shutil.rmtree(options["processed_folder"])  # someone cleaned up by hand
            producer.publish({"n": 2}, exchange=queue.exchange, routing_key="again")
            c.drain_events(timeout=5)
    assert got == [1, 2]


def test_worker_settings_put_the_live_queue_first() -> None:
    redis = celery_settings(WorkerConfig(broker_url="redis://127.0.0.1:6379/9"))
    assert redis["broker_transport_options"]["queue_order_strategy"] == "priority"
    assert redis["result_backend"] == "redis://127.0.0.1:6379/9"
    fs = celery_settings(WorkerConfig(broker_dir="/tmp/cope-test-broker"))
    assert fs["broker_transport"] == TRANSPORT
    assert fs["broker_transport_options"]["polling_interval"] == 0.05
    assert fs["result_backend"].startswith("file://")
    assert fs["task_routes"]["worker.score_live"] == {"queue": "gpu_live"}


def test_worker_marks_over_budget_items_without_scoring_them() -> None:
    from worker.base import Score
    from worker.contract import LiveRequest, WorkerInfo
    from worker.live import score_live_request

    class Scorer:
        info = WorkerInfo("fake", "fake", "", "cpu")

        def score(self, policy: str, contents: list[str]) -> list[Score]:
            return [
                Score.failed("Content too long for CoPE: 9000 tokens")
                if "long" in c
                else Score.from_p1(0.9)
                for c in contents
            ]

    result = score_live_request(Scorer(), LiveRequest(policy="p", contents=["a", "long", "b"]))
    assert [o.too_long for o in result.outcomes] == [False, True, False]
    assert result.outcomes[1].label is None and result.outcomes[0].label == 1


@pytest.mark.django_db
def test_budget_errors_name_each_item_over_the_budget(settings: Any) -> None:
    settings.COPE_CONTEXT_LIMIT = 1000
    errors = live.budget_errors(POLICY_TEXT, ["short", "word " * 900, "fine"])
    assert list(errors) == [1] and "not truncated" in errors[1]
    settings.COPE_CONTEXT_LIMIT = 256
    assert set(live.budget_errors(POLICY_TEXT * 3, ["a", "b"])) == {0, 1}


# The round trip on the real worker -----------------------------------------------------------


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_live_round_trip_on_the_real_worker(celery_workers: Any) -> None:
    answer = live.score(policy=POLICY_TEXT, contents=[ABUSE, CALM])
    assert [i.label for i in answer.items] == [1, 0]
    assert answer.worker is not None and answer.worker.backend == "embedding"
    assert 0 < answer.model_seconds <= answer.seconds


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_live_request_jumps_ahead_of_queued_bulk_chunks(celery_workers: Any) -> None:
    """60 chunks wait on ``gpu``; a live request is answered long before they are scored."""
    from cope_studio.celery import app
    from worker.contract import GPU_QUEUE, SCORE_CHUNK_TASK, ScoreItem, ScoreRequest

    texts = [f"{ABUSE} {i}" for i in range(16)]
    for chunk in range(60):
        request = ScoreRequest(
            job_id=10**9,
            chunk_id=chunk,
            side="A",
            policy=POLICY_TEXT,
            items=[ScoreItem(i, t) for i, t in enumerate(texts)],
        )
        app.send_task(SCORE_CHUNK_TASK, args=[request.to_dict()], queue=GPU_QUEUE)
    time.sleep(0.3)  # the worker is now busy with the first chunks
    answer = live.score(policy=POLICY_TEXT, contents=[CALM])
    assert answer.items[0].label == 0
    left = _queued(celery_workers, GPU_QUEUE)
    _purge(celery_workers, GPU_QUEUE)  # the bulk chunks served their purpose
    assert left >= 20, f"only {left} of 60 bulk chunks were still queued: the live request waited"


def _purge(workers: Any, queue: str) -> None:
    if workers.redis_url:
        import redis

        redis.Redis.from_url(workers.redis_url).delete(queue)
        return
    for f in Path(workers.tmp / "broker" / "messages").iterdir():
        if f.name.endswith(f".{queue}.msg"):
            f.unlink(missing_ok=True)


def _queued(workers: Any, queue: str) -> int:
    if workers.redis_url:
        import redis

        return int(redis.Redis.from_url(workers.redis_url).llen(queue))
    folder = Path(workers.tmp / "broker" / "messages")
    return sum(1 for f in folder.iterdir() if f.name.endswith(f".{queue}.msg"))


# The Try box -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_try_needs_an_author(client: Client, reviewer: Any, author: Any) -> None:
    version = make_version(author)
    client.login(username=reviewer.username, password=PASSWORD)
    response = client.post(reverse("labeling:try"), {"contents": CALM, "version": version.pk})
    assert response.status_code == 403
    page = client.get(version.get_absolute_url())
    assert 'id="try"' not in page.content.decode()


@pytest.mark.django_db
def test_try_form_errors(client: Client, author: Any, settings: Any) -> None:
    settings.COPE_TRY_MAX_ITEMS = 2
    version = make_version(author)
    client.login(username=author.username, password=PASSWORD)
    url = reverse("labeling:try")
    response = client.post(
        url, {"contents": "  \n ", "version": version.pk}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "at least one content" in response.content.decode()
    response = client.post(url, {"contents": "a\nb\nc", "version": version.pk})
    assert response.status_code == 422 and "at most 2" in response.content.decode()
    response = client.post(url, {"contents": "a"})
    assert response.status_code == 422 and "no policy text" in response.content.decode()


@pytest.mark.django_db
def test_the_try_box_is_on_the_editor_version_and_policy_pages(client: Client, author: Any) -> None:
    version = make_version(author)
    client.login(username=author.username, password=PASSWORD)
    for url in (
        version.get_absolute_url(),
        version.policy.get_absolute_url(),
        reverse("policies:version_create", args=[version.policy.pk]),
    ):
        html = client.get(url).content.decode()
        assert 'id="try"' in html and f'name="version" value="{version.pk}"' in html, url
    editor = client.get(reverse("policies:version_create", args=[version.policy.pk]))
    assert 'hx-include="#id_text, #id_twin_text"' in editor.content.decode()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_try_labels_unsaved_text_under_a_and_b_escaped(
    celery_workers: Any, client: Client, author: Any, settings: Any
) -> None:
    settings.COPE_CONTEXT_LIMIT = 1000
    client.login(username=author.username, password=PASSWORD)
    hostile = "<script>alert(1)</script> you idiot Sam"
    contents = "\n".join([ABUSE, CALM, hostile, "insult " * 900])
    twin = (
        "# Kindness\n\n## Definition of Labels\n\n### (K1) Kind\n#### Includes\n- Weather talk.\n"
    )
    response = client.post(
        reverse("labeling:try"),
        {"contents": contents, "mode": "lines", "text": POLICY_TEXT, "twin_text": twin},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200, html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert html.count('class="try-row') == 4
    assert "disagree" in html and "unsaved text" in html
    assert "too long" in html and "not truncated" in html


# API key pages -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_key_is_shown_once_then_only_its_prefix(client: Client, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    url = reverse("labeling:apikey_list")
    response = client.post(url, {"name": "moderation-svc", "scopes": ["read", "label"]})
    assert response.status_code == 200
    key = ApiKey.objects.get()
    html = response.content.decode()
    secret = html.split('id="new-key">')[1].split("<")[0]
    assert api_keys.hash_key(secret) == key.key_hash and key.scopes == ["read", "label"]
    assert "no-store" in response["Cache-Control"]
    later = client.get(url).content.decode()
    assert secret not in later and key.prefix in later


@pytest.mark.django_db
def test_revoked_key_is_refused_and_others_cannot_revoke(
    client: Client, author: Any, reviewer: Any, admin_user: Any
) -> None:
    secret = api_keys.create_key(owner=author, name="svc", scopes=["read"], by=author).secret
    key = ApiKey.objects.get()
    client.login(username=reviewer.username, password=PASSWORD)
    assert client.post(reverse("labeling:apikey_revoke", args=[key.pk])).status_code == 403
    client.login(username=admin_user.username, password=PASSWORD)
    assert author.username in client.get(reverse("labeling:apikey_list")).content.decode()
    client.post(reverse("labeling:apikey_revoke", args=[key.pk]), {"confirm": "on"})
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == admin_user
    response = Client().get("/api/v1/policies", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 401


@pytest.mark.django_db
def test_admin_creates_a_key_for_someone_else_within_their_role(
    client: Client, admin_user: Any, reviewer: Any
) -> None:
    client.login(username=admin_user.username, password=PASSWORD)
    url = reverse("labeling:apikey_list")
    response = client.post(url, {"name": "r", "scopes": ["label"], "owner": reviewer.pk})
    assert (
        response.status_code == 422
        and "does not allow the label scope" in response.content.decode()
    )
    response = client.post(url, {"name": "r", "scopes": ["read"], "owner": reviewer.pk})
    assert response.status_code == 200 and ApiKey.objects.get().owner == reviewer


@pytest.mark.django_db
def test_try_counts_only_labeled_rows(client: Client, author: Any, settings: Any) -> None:
    settings.COPE_CONTEXT_LIMIT = 1000
    version = make_version(author)
    client.login(username=author.username, password=PASSWORD)
    long = "insult " * 900
    response = client.post(
        reverse("labeling:try"),
        {"contents": f"{long}\n{long} again", "version": version.pk},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200, html
    summary = html.split('class="small try-summary">')[1].split("</p>")[0]
    text = " ".join(summary.replace(">", "> ").split())
    assert "agree on all" not in text
    assert "A and B agree on 0 of 0 labeled" in summary and "; 2 too long to label" in summary


@pytest.mark.django_db
def test_try_summary_counts_agreement_among_labeled_rows_only(
    client: Client, author: Any, settings: Any, fake_worker: Any
) -> None:
    from tests.model_worker import fake_p1

    settings.COPE_CONTEXT_LIMIT = 1000
    version = make_version(author)
    client.login(username=author.username, password=PASSWORD)
    contents = [ABUSE, CALM, "insult " * 900]
    response = client.post(
        reverse("labeling:try"),
        {"contents": "\n".join(contents), "version": version.pk},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    a = [int(fake_p1(version.text, c) >= 0.5) for c in contents[:2]]
    b = [int(fake_p1(version.twin_text, c) >= 0.5) for c in contents[:2]]
    agree = sum(x == y for x, y in zip(a, b, strict=True))
    if agree == 2:
        assert "A and B agree on 2 of 2 labeled" in html
    else:
        assert f"{2 - agree} of 2 labeled disagree" in html
    assert "; 1 too long to label" in html


@pytest.mark.django_db
def test_try_page_ignores_a_version_id_that_is_not_ascii_digits(
    client: Client, author: Any
) -> None:
    client.login(username=author.username, password=PASSWORD)
    for value in ("²", "１", "9" * 40):
        response = client.get(reverse("labeling:try"), {"version": value})
        assert response.status_code == 200, value
