"""The filesystem transport for the embedded default's model workers: strict queue order, and
fast polling only while there is work.

* kombu's virtual transports take turns between the queues a worker consumes (a fair cycle),
  so with ``-Q gpu_live,gpu`` a live request could still wait behind a bulk chunk every other
  turn. This channel always looks at the queues in the order the worker consumes them:
  ``gpu_live`` first. (On Redis the same order comes from ``queue_order_strategy=priority``.)
* A filesystem consumer finds a message only when it next lists the folder, so the polling
  interval is added to every round trip. Idle, the worker polls every ``polling_interval``
  (``COPE_BROKER_POLL_SECONDS``, 50 ms: almost no CPU); for ``busy_seconds`` after a message it
  polls every ``busy_polling_interval`` (1 ms for the model workers, a listing of a folder
  that holds a few messages; 10 ms for the bookkeeping worker, which nobody waits on), so a Try
  or an API call made while people are working waits a millisecond, not fifty.
* kombu's own filesystem channel writes a message in place and a consumer takes any file it
  lists, so a fast poller could take a message half-written (or still empty), fail to decode it
  and drop it: live requests were lost that way. Here a message is written under a name no
  consumer reads and renamed into place when complete (``os.replace``, atomic within a folder),
  and a consumer claims a message by renaming it into the processed folder (same file system,
  atomic: of two consumers exactly one wins) before reading it.

The web side's Celery app uses this transport too (``CELERY_BROKER_TRANSPORT``), so every
sender and every consumer of the embedded default's folders follow the same protocol.
"""

from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic, sleep, time
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

BUSY_POLLING_INTERVAL = 0.001
BUSY_SECONDS = 30.0


# A message being written: no consumer matches this name (it lists ``<stamp>_<id>.<queue>.msg``).
_PARTIAL_PREFIX = ".partial-"


class OrderedChannel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # Wall-clock microseconds, zero-padded: names sort in send order across processes.
        name = f"{int(time() * 1_000_000):020d}_{uuid.uuid4()}.{queue}.msg"
        folder = self.data_folder_out
        partial = os.path.join(folder, _PARTIAL_PREFIX + name)
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
            os.replace(partial, os.path.join(folder, name))
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add message {name!r} to {folder!r}: {exc}") from exc

    _claim_folder_ready = False

    def _claim_folder(self) -> str:
        """Where a consumer moves a message it takes (the processed folder, beside the
        messages): a rename there must not fail for want of the folder."""
        folder: str = self.processed_folder
        if not self._claim_folder_ready:
            os.makedirs(folder, exist_ok=True)
            self._claim_folder_ready = True
        return folder

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        claimed_in = self._claim_folder()
        for name in sorted(os.listdir(folder)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(claimed_in, name)
            source = os.path.join(folder, name)
            try:
                os.rename(source, claimed)  # atomic: one consumer wins
            except FileNotFoundError:
                if not os.path.exists(source):
                    continue  # another consumer took it
                # The processed folder went away (cleaned up by hand): make it again.
                os.makedirs(claimed_in, exist_ok=True)
                try:
                    os.rename(source, claimed)
                except FileNotFoundError:
                    continue
            except OSError as exc:
                raise ChannelError(f"Cannot claim message {name!r}: {exc}") from exc
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                if not self.store_processed:
                    os.unlink(claimed)
            except OSError as exc:
                raise ChannelError(f"Cannot read message {claimed!r}: {exc}") from exc
            return loads(bytes_to_str(payload))  # type: ignore[no-untyped-call]
        raise Empty()

    def _poll(self, cycle: Any, callback: Any, timeout: float | None = None) -> Any:
        for queue in list(self._active_queues):
            try:
                return self._get_and_deliver(queue, callback)  # type: ignore[no-untyped-call]
            except Empty:
                continue
        raise Empty()


class OrderedFilesystemTransport(filesystem.Transport):
    Channel = OrderedChannel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)  # type: ignore[no-untyped-call]
        options = client.transport_options
        self.busy_polling_interval = float(
            options.get("busy_polling_interval", BUSY_POLLING_INTERVAL)
        )
        self.busy_seconds = float(options.get("busy_seconds", BUSY_SECONDS))
        self._last_message = float("-inf")

    def drain_events(self, connection: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        timeout: float | None = kwargs.get("timeout")
        started = monotonic()
        cycle: Any = self.cycle
        while True:
            try:
                cycle.get(self._deliver, timeout=timeout)
            except Empty:
                now = monotonic()
                if timeout is not None and now - started >= timeout:
                    raise TimeoutError() from None
                busy = now - self._last_message < self.busy_seconds
                interval = self.busy_polling_interval if busy else self.polling_interval
                if interval is None:
                    continue
                sleep(min(interval, timeout) if timeout else interval)
            else:
                self._last_message = monotonic()
                return


TRANSPORT = f"{__name__}:OrderedFilesystemTransport"
