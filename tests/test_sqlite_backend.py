"""The embedded default's SQLite backend: write transactions take turns on a file lock.

Checked on database files of their own (the suite's SQLite database is in memory, which has no
other writer), through the hooks Django's ``transaction.atomic`` calls: a transaction starts
with ``_start_transaction_under_autocommit`` and ends with ``commit``, ``rollback`` or a close.
"""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import OperationalError
from django.db.utils import ConnectionHandler

from cope_studio.lib.sqlite.base import DatabaseWrapper


@pytest.fixture(autouse=True)
def _own_files(django_db_blocker: Any) -> Any:
    """These connections are to files of their own, not the suite's test database."""
    with django_db_blocker.unblock():
        yield


def _connection(path: Path, timeout: float = 30) -> Any:
    options = {"timeout": timeout, "transaction_mode": "IMMEDIATE"}
    entry = {"ENGINE": "cope_studio.lib.sqlite", "NAME": str(path), "OPTIONS": options}
    conn = ConnectionHandler({"default": entry})["default"]
    assert isinstance(conn, DatabaseWrapper)
    return conn


def _turn_taken(path: Path) -> bool:
    """Whether a connection holds the writers' turn now (tried without waiting)."""
    with open(f"{path}.writers", "a+") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False


def _begin(conn: Any) -> None:
    conn.set_autocommit(True)
    conn._start_transaction_under_autocommit()  # what transaction.atomic() calls


def test_the_embedded_default_uses_it() -> None:
    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        pytest.skip("this run is on PostgreSQL")
    assert settings.DATABASES["default"]["ENGINE"] == "cope_studio.lib.sqlite"


def test_a_write_transaction_holds_the_turn_until_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "studio.sqlite3"
    conn = _connection(path)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE t (x integer)")
    assert not _turn_taken(path)  # a statement outside a transaction takes no turn
    for end in ("commit", "rollback", "close"):
        _begin(conn)
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
        assert _turn_taken(path), end
        getattr(conn, end)()
        assert not _turn_taken(path), end
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t")
        assert cursor.fetchone() == (1,)  # the committed row only
    conn.close()


def test_a_writer_waits_for_its_turn_then_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "studio.sqlite3"
    first, second = _connection(path), _connection(path)
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE t (x integer)")
    _begin(first)
    started = threading.Event()

    def write() -> None:
        _begin(second)
        if second._writer_fd is not None:  # its turn came through the wait, not past it
            started.set()
        with second.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (2)")
        second.commit()

    writer = threading.Thread(target=write)
    second.inc_thread_sharing()
    writer.start()
    assert not started.wait(0.3)  # waiting for the turn
    with first.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")
    first.commit()
    writer.join(10)
    assert started.is_set() and not writer.is_alive()
    with first.cursor() as cursor:
        cursor.execute("SELECT x FROM t ORDER BY rowid")
        assert cursor.fetchall() == [(1,), (2,)]
    second.dec_thread_sharing()
    first.close()
    second.close()


def test_a_writer_that_waited_too_long_meets_sqlites_lock_as_before(tmp_path: Path) -> None:
    """A turn held past the connection's timeout (a long import): the waiting writer goes on to
    SQLite's own lock and fails there with its usual error, instead of waiting without end."""
    path = tmp_path / "studio.sqlite3"
    holder, waiter = _connection(path), _connection(path, timeout=0.2)
    with holder.cursor() as cursor:
        cursor.execute("CREATE TABLE t (x integer)")
    _begin(holder)
    with pytest.raises(OperationalError, match="locked"):
        _begin(waiter)
    assert waiter._writer_fd is None  # it holds no turn after failing
    holder.rollback()
    _begin(waiter)  # and takes one once the holder is done
    assert _turn_taken(path)
    waiter.commit()
    holder.close()
    waiter.close()
