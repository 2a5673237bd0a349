"""gunicorn settings read from the working directory (the repository root, /app in images).

gunicorn >= 23 opens a control socket, by default one per user in the home folder: two studios
run by one user on one machine would fight over it. Each studio gets its own, in its data folder
(``COPE_DATA_DIR``), or none when ``GUNICORN_CONTROL_SOCKET=off`` or the path is too long for a
Unix socket.

Connections are not kept alive (``keepalive = 0``): each request is a connection of its own,
taken by whichever worker is free, as behind a reverse proxy that opens one upstream connection
per request (nginx's default). With keep-alive, a browser's connection stays with the worker that
accepted it; workers wake together for a new connection and one of them tends to win most, so
the load was not shared: under 20 reviewers (``bench_queue``, 3 workers x 4 threads) one worker
spent 43% of a core while two others idled, and the next card's p95 was 71-79 ms; without
keep-alive each worker took about a third and the p95 fell to about 50 ms, for the same CPU a
request. ``GUNICORN_CMD_ARGS="--keep-alive 2"`` turns it back on where a proxy spreads the load.

Workers: ``COPE_WEB_WORKERS`` processes (default two per CPU this process may run on, at most
eight), each with ``COPE_WEB_THREADS`` threads (default 4), and a worker takes a connection only
when one of its threads is free to serve it (``on_starting``). A gthread worker otherwise accepts
while its threads are busy: the request waits for the interpreter (or the only thread) of a busy
process while another process idles. Measured with ``bench_queue`` at 1M labels on a loaded
2-core machine, runs in turns on a restored history (docs/benchmarks.md, tenth session): the
embedded default's next-card p95 was 64.5 and 78.8 ms with 2 workers x 4 threads taking every
connection, 39.6 and 52.9 ms with 4 x 4 taking only what they can serve; on a quieter machine,
and on PostgreSQL, the two were within noise.

Everything else stays on the command line (bin/run-studio, docker-compose.yml).
"""

import gc
import os
import sys
from pathlib import Path
from typing import Any

from worker.env import env_int, env_str

_data_dir = Path(env_str("COPE_DATA_DIR", "var")).resolve()
_socket = env_str("GUNICORN_CONTROL_SOCKET", str(_data_dir / "gunicorn.ctl"))
if _socket.lower() in ("off", "none", "false", "0") or len(_socket.encode()) > 100:
    control_socket_disable = True
else:
    Path(_socket).parent.mkdir(parents=True, exist_ok=True)
    control_socket = _socket

keepalive = 0

# Two processes per CPU: a request spends part of its time waiting on the database, and the
# interpreter of each process runs one thread at a time. Capped: each process holds about 120 MB
# and a database connection per thread in use.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
workers = env_int("COPE_WEB_WORKERS", min(2 * _CPUS, 8), minimum=1, maximum=64)
# Threads serve the requests that wait (a live Try or API call waits for a model worker).
threads = env_int("COPE_WEB_THREADS", 4, minimum=1, maximum=64)
worker_class = "gthread"


def on_starting(server: Any) -> None:
    """A worker accepts a connection only when one of its threads is free to serve it, however
    the threads were set (here, ``GUNICORN_CMD_ARGS`` or the command line): gthread's default
    (1,000 connections a worker) lets a busy worker take requests that then wait for its
    interpreter while another worker idles. With keep-alive on, kept connections need room of
    their own, and gunicorn's setting stays."""
    cfg = server.cfg
    if not cfg.keepalive:
        cfg.set("worker_connections", cfg.threads)


# How long a thread that runs Python keeps the GIL while another thread of the worker waits for it
# (Python's default: 5 ms). A request's thread gives the GIL up at each database round trip (a
# card makes about a dozen) and, with another request's thread busy in the same worker, waited up
# to the whole interval to take it back, each time. Measured with ``bench_queue`` at 1M labels on
# PostgreSQL (3 workers x 4 threads, 20 reviewers, interleaved runs on a loaded 2-core machine):
# next-task p95 62.8 and 66.1 ms with 5 ms, 54.8 and 55.2 ms with 0.5 ms (web CPU a request
# 16.2-17.0 against 15.0-15.1 ms); on a quiet machine the two were within noise.
SWITCH_INTERVAL = 0.0005


def post_worker_init(worker: object) -> None:
    """Move everything loaded at start (Django, the URL and template caches, the apps' modules)
    out of the garbage collector's sight: a full collection then walks only what requests made.
    Measured on the review queue's process: a full collection paused a worker (every thread of
    it) for 182 ms with the start-up objects tracked, 12 ms frozen."""
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL)
