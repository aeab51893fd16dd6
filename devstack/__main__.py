"""``python -m devstack up|status|down``: the embedded servers of a data dir, from the shell (`make clean`).

Usage::

    python -m devstack up     --data-dir var   # prints DATABASE_URL=... / REDIS_URL=...
    python -m devstack status --data-dir var   # exit 3 unless both run
    python -m devstack down   --data-dir var
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from devstack import (
    DEFAULT_DATABASE,
    DEFAULT_PG_PORT,
    DEFAULT_REDIS_PORT,
    DevstackError,
    ensure_postgres,
    ensure_redis,
    status,
    stop_all,
)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="Embedded Postgres + Redis.")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT)
    parser.add_argument("--redis-port", type=int, default=DEFAULT_REDIS_PORT)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument(
        "--if-unset",
        action="store_true",
        help="up: start only the servers whose DATABASE_URL / REDIS_URL is not set in the "
        "environment; echo the configured value for the others",
    )
    return parser


def _up(args: argparse.Namespace) -> None:
    lines = []
    for var in ("DATABASE_URL", "REDIS_URL"):
        if args.if_unset and os.environ.get(var):
            lines.append(f"{var}={os.environ[var]}")
            continue
        t0 = time.monotonic()
        if var == "DATABASE_URL":
            ep = ensure_postgres(args.data_dir, args.pg_port, args.database)
        else:
            ep = ensure_redis(args.data_dir, args.redis_port)
        what = "started" if ep.started else "already running"
        _say(f"{var}: {what} (pid {ep.pid}, {time.monotonic() - t0:.2f}s)")
        lines.append(f"{var}={ep.url}")
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 1 on failure, 3 from `status` when a server is stopped."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="devstack: %(message)s")
    try:
        if args.command == "up":
            _up(args)
        elif args.command == "down":
            stop_all(args.data_dir)
            _say(f"stopped embedded servers under {args.data_dir}")
        else:
            st = status(args.data_dir)
            for name, running in st.items():
                print(f"{name}: " + (f"running pid={running.pid} url={running.url}" if running else "stopped"))
            return 0 if all(st.values()) else 3
    except (DevstackError, OSError, subprocess.SubprocessError) as exc:
        _say(f"devstack: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
