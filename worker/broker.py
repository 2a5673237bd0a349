"""The filesystem transport with strict queue order, for the embedded default's model workers.

kombu's virtual transports take turns between the queues a worker consumes (a fair cycle), so
with ``-Q gpu_live,gpu`` a live request could still wait behind a bulk chunk every other turn.
This channel always looks at the queues in the order the worker consumes them: ``gpu_live``
first. (On Redis the same order comes from ``queue_order_strategy=priority``.)
"""

from __future__ import annotations

from queue import Empty
from typing import Any

from kombu.transport import filesystem


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


TRANSPORT = f"{__name__}:OrderedFilesystemTransport"
