"""The filesystem transport for the embedded default's model workers: strict queue order, and
fast polling only while there is work.

* kombu's virtual transports take turns between the queues a worker consumes (a fair cycle),
  so with ``-Q gpu_live,gpu`` a live request could still wait behind a bulk chunk every other
  turn. This channel always looks at the queues in the order the worker consumes them:
  ``gpu_live`` first. (On Redis the same order comes from ``queue_order_strategy=priority``.)
* A filesystem consumer finds a message only when it next lists the folder, so the polling
  interval is added to every round trip. Idle, the worker polls every ``polling_interval``
  (``COPE_BROKER_POLL_SECONDS``, 50 ms: almost no CPU); for ``busy_seconds`` after a message it
  polls every ``busy_polling_interval`` (5 ms), so a Try or an API call made while people are
  working waits a few milliseconds, not fifty.
"""

from __future__ import annotations

from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.transport import filesystem

BUSY_POLLING_INTERVAL = 0.005
BUSY_SECONDS = 30.0


class OrderedChannel(filesystem.Channel):
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
