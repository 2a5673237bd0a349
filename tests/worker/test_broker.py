"""The filesystem broker (``worker.broker``) with two consumers on one folder: every message is
delivered exactly once, and neither consumer fails on a message the other took.

``test_two_consumers_...`` runs the race for real: two processes (real parallelism, as two
worker processes on one host), each with its own kombu connection, take one message per round
and start each round together (a barrier), so in every round both list the same folder in the
same sorted order and go for the same first message: hundreds of races for one file per run.
How often the two overlap depends on the machine's load, so ``test_a_consumer_takes_nothing_...``
forces the one interleaving that matters. A consumer that reads a message in place instead of
claiming it by an atomic rename hands the same message to both, or fails on a file that
vanished between listing and reading.
"""

from __future__ import annotations

import json
import multiprocessing
import uuid
from collections import Counter
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from worker import broker
from worker.broker import TRANSPORT

MESSAGES = 500
ROUNDS = MESSAGES // 2
# A message of some size widens the window between a consumer opening a file and removing it.
PAD = "x" * 65536


def _folder(tmp_path: Path) -> Path:
    for sub in ("messages", "control", "processed"):
        (tmp_path / sub).mkdir()
    return tmp_path


def _queue_name() -> str:
    # kombu keeps a transport's declared queues in a class attribute (one per process), while
    # this transport keeps the bindings in the folder: a name already declared by an earlier
    # test, in another folder, would not be bound in this one.
    return f"race-{uuid.uuid4().hex}"


def _connection(folder: Path) -> Connection:
    return Connection(
        transport=TRANSPORT,
        transport_options={
            "data_folder_in": str(folder / "messages"),
            "data_folder_out": str(folder / "messages"),
            "control_folder": str(folder / "control"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "polling_interval": 0.001,
        },
    )


def _receive(queue: Any, timeout: float) -> int | None:
    try:
        message = queue.get(timeout=timeout)
    except Empty:
        return None
    message.ack()
    n: int = message.payload["n"]
    return n


def _consume(folder: Path, name: str, start: Any, report: Path) -> None:
    """Take one message per round, the rounds started together with the other consumer; then
    write what was received (or the error)."""
    received: list[int] = []
    error = ""
    try:
        with _connection(folder) as conn:
            queue: Any = conn.SimpleQueue(name)
            for _ in range(ROUNDS):
                start.wait(timeout=60)
                n = _receive(queue, timeout=0.05)
                if n is not None:
                    received.append(n)
            queue.close()
    except Exception as exc:
        start.abort()  # the other consumer stops waiting for this one
        error = repr(exc)
    report.write_text(json.dumps({"received": received, "error": error}))


def test_two_consumers_on_one_folder_get_each_message_exactly_once(tmp_path: Path) -> None:
    folder, name = _folder(tmp_path), _queue_name()
    with _connection(folder) as conn:
        queue: Any = conn.SimpleQueue(name)
        for n in range(MESSAGES):
            queue.put({"n": n, "pad": PAD})

        context = multiprocessing.get_context("spawn")
        start = context.Barrier(2)
        reports = [tmp_path / f"consumer-{i}.json" for i in range(2)]
        consumers = [
            context.Process(target=_consume, args=(folder, name, start, report))
            for report in reports
        ]
        for consumer in consumers:
            consumer.start()
        for consumer in consumers:
            consumer.join(timeout=120)
        assert [c.exitcode for c in consumers] == [0, 0], "a consumer did not finish"

        # Whatever the rounds left (a round where a consumer found nothing yet) is drained here.
        rest = list(iter(lambda: _receive(queue, timeout=0.2), None))
        queue.close()

    results = [json.loads(report.read_text()) for report in reports]
    assert [r["error"] for r in results] == ["", ""]
    # Both consumers took part: otherwise the run raced nothing.
    assert results[0]["received"] and results[1]["received"]
    counts = Counter(results[0]["received"] + results[1]["received"] + rest)
    duplicates = sorted(n for n, times in counts.items() if times > 1)
    assert duplicates == [], f"{len(duplicates)} messages delivered twice"
    assert sorted(counts) == list(range(MESSAGES)), "messages lost"


def test_a_consumer_takes_nothing_another_has_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above, made deterministic: while the first consumer has its message's file open,
    the second takes a message. It must get the next one, and the first must still get its own
    (a consumer reading in place would hand both the same file, then fail to remove it)."""
    folder, name = _folder(tmp_path), _queue_name()
    with _connection(folder) as first, _connection(folder) as second:
        mine: Any = first.SimpleQueue(name)
        for n in range(3):
            mine.put({"n": n})
        theirs: Any = second.SimpleQueue(name)
        taken_meanwhile: list[int | None] = []

        def open_then_let_the_other_take(*args: Any, **kwargs: Any) -> Any:
            f = open(*args, **kwargs)  # noqa: SIM115 (the broker reads and closes it)
            if not taken_meanwhile:
                taken_meanwhile.append(None)  # first: the other's own read comes through here
                taken_meanwhile[0] = _receive(theirs, timeout=0.5)
            return f

        monkeypatch.setattr(broker, "open", open_then_let_the_other_take, raising=False)
        got = _receive(mine, timeout=0.5)
        monkeypatch.undo()
        rest = list(iter(lambda: _receive(mine, timeout=0.2), None))
        mine.close()
        theirs.close()

    assert taken_meanwhile, "the broker no longer reads a message with open(): adapt the test"
    assert (got, taken_meanwhile[0], rest) == (0, 1, [2])
