"""The model worker's command line (no Django):

- ``python -m worker serve``: check the weights, then become one GPU worker (the command
  ``celery_worker_argv()`` gives: pool, concurrency, prefetch); extra arguments go to Celery.
- ``python -m worker fetch``: download every model this worker needs into the HF cache (with
  ``HF_TOKEN``) and read each back. ``python -m worker check``: the same, without downloading.
- ``python -m worker merge --out DIR``: merge the adapter into the base once (for vLLM).
- ``python -m worker info [--load]``: the settings (no secrets), optionally the loaded scorer.
- ``python -m worker command``: print the worker command line.
- ``python -m worker health``: exit 0 when this host's worker sent a heartbeat recently
  (``COPE_HEARTBEAT_FILE``), for container health checks.

A problem is one line on stderr and a non-zero exit: 2 for settings or missing weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from worker.base import BackendConfigError
from worker.config import WorkerConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the settings read from the environment")
    info.add_argument("--load", action="store_true", help="load the scorer and describe it")
    sub.add_parser("command", help="print the command that starts one GPU worker")
    sub.add_parser("fetch", help="download the models this worker needs and verify them")
    sub.add_parser("check", help="verify the models this worker needs are here (no download)")
    merge = sub.add_parser("merge", help="merge COPE_ADAPTER into COPE_BASE_MODEL, for vLLM")
    merge.add_argument("--out", required=True, type=Path, help="new directory for the model")
    merge.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    sub.add_parser("health", help="exit 0 if this worker sent a heartbeat recently")
    serve = sub.add_parser("serve", help="check the weights, then run one GPU worker")
    serve.add_argument("celery_args", nargs=argparse.REMAINDER, help="extra Celery arguments")
    args = parser.parse_args(argv)
    try:
        config = WorkerConfig.from_env()
        if args.command == "command":
            from worker.celery_app import celery_worker_argv

            print(shlex.join(celery_worker_argv()))
            return 0
        if args.command == "health":
            from worker.heartbeat import healthy

            ok, why = healthy(config)
            print(why, file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        if args.command in ("fetch", "check"):
            from worker.weights import prepare

            for ready in prepare(config, download=args.command == "fetch"):
                print(ready.line())
            return 0
        if args.command == "merge":
            from worker.weights import merge as merge_models

            print(f"merged into {merge_models(config, args.out, dtype=args.dtype)}")
            return 0
        if args.command == "serve":
            from worker.weights import prepare

            prepare(config, download=False)
            from worker.celery_app import celery_worker_argv

            command = celery_worker_argv() + [a for a in args.celery_args if a != "--"]
            sys.stdout.flush()
            os.execvp(command[0], command)  # replaces this process: Celery's signals apply
            return 0  # only reached when execvp is replaced (tests)
        report: dict[str, object] = {"settings": config.describe()}
        if args.load:
            from worker.loader import load_scorer

            report["worker"] = load_scorer(config).info.to_dict()
    except BackendConfigError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
