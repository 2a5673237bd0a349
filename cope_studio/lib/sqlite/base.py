"""Django's SQLite backend, whose write transactions take turns on a file lock.

SQLite lets one writer in at a time. A transaction that finds the database locked is retried by
SQLite's busy handler, which sleeps between tries in growing steps (1, 2, 5, 10, 15, 20, 25 ms
...), so a writer that waited at all usually waits tens of milliseconds longer than the lock was
held. Here every transaction the studio opens (``transaction.atomic``, IMMEDIATE: see
settings) first takes an exclusive ``flock`` on a file beside the database and keeps it until
commit or rollback, so writers of every process (web threads, Celery workers) queue for it in
the kernel and the next one starts the moment the last one ends.

The turn only orders writers; SQLite's lock still guards the data. A writer that has waited the
connection's ``timeout`` for its turn (a long import holding it) goes on to SQLite's lock and
its busy handler, as before, and fails there as before if that lock stays taken. A statement
outside a transaction meets SQLite's lock alone; where ``flock`` does not exist (Windows), or
for an in-memory database, nothing changes.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.db.backends.sqlite3 import base

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _wait_for_turn(fd: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the lock on ``fd``: whether it was taken. The wait is a
    blocking ``flock`` in a thread of its own (Python offers no timed one), which lets go of the
    interpreter while blocked and wakes when the holder lets go; after the timeout the file is
    left to that thread, which closes it (giving the turn straight back) once the lock comes."""
    taken = threading.Event()
    decided = threading.Lock()
    gave_up = False

    def wait() -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with decided:
            if gave_up:
                os.close(fd)
                return
            taken.set()

    threading.Thread(target=wait, name="sqlite-writer-turn", daemon=True).start()
    if taken.wait(timeout):
        return True
    with decided:
        if taken.is_set():
            return True
        gave_up = True
    return False


class DatabaseWrapper(base.DatabaseWrapper):
    # The private hooks below are Django's own (django-stubs does not declare them).
    _writer_fd: int | None = None

    def _lock_path(self) -> str | None:
        name = str(self.settings_dict["NAME"])
        if fcntl is None or self.is_in_memory_db() or not name:
            return None
        return f"{name}.writers"

    def _take_writer_turn(self) -> None:
        path = self._lock_path()
        if path is None or self._writer_fd is not None:
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
            if not _wait_for_turn(fd, timeout):
                return  # no turn: SQLite's own lock decides, as without one
        except BaseException:
            os.close(fd)
            raise
        self._writer_fd = fd

    def _end_writer_turn(self) -> None:
        fd, self._writer_fd = self._writer_fd, None
        if fd is not None:
            os.close(fd)  # closing the file releases the lock

    def _start_transaction_under_autocommit(self) -> None:
        self._take_writer_turn()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._end_writer_turn()
            raise

    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._end_writer_turn()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._end_writer_turn()

    def _close(self) -> Any:
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._end_writer_turn()
