"""``python -m worker info``: the worker's settings (no secrets); ``--load`` also loads the
scorer and prints its ``WorkerInfo``. ``python -m worker command`` prints the worker command."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from worker.base import BackendConfigError
from worker.config import WorkerConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the settings read from the environment")
    info.add_argument("--load", action="store_true", help="load the scorer and describe it")
    sub.add_parser("command", help="print the command that starts one GPU worker")
    args = parser.parse_args(argv)
    try:
        config = WorkerConfig.from_env()
        if args.command == "command":
            from worker.celery_app import celery_worker_argv

            print(shlex.join(celery_worker_argv()))
            return 0
        report: dict[str, object] = {"settings": config.describe()}
        if args.load:
            from worker.loader import load_scorer

            report["worker"] = load_scorer(config).info.to_dict()
    except BackendConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
