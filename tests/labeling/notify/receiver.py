"""A real HTTP receiver for webhook tests, on a loopback port in a thread: it answers each
POST with the next status of a script (or refuses connections while "down") and keeps what
it got."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answered in order; then 200
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.received.append(Received(dict(self.headers.items()), body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def receiver_on_free_port() -> Iterator[Receiver]:
    """A receiver whose port is reserved but not listening until ``start`` (down at first)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # the port is now closed: a POST to it is refused
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hook")
    try:
        yield receiver
    finally:
        if receiver.server is not None:
            receiver.server.shutdown()
            receiver.server.server_close()


def start(receiver: Receiver) -> None:
    port = int(receiver.url.split(":")[2].split("/")[0])
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    receiver.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
