"""devstack/postgres.py: a real PostgreSQL 18 from the wheel, started, reused, reached."""

from __future__ import annotations

import os
import time

import psycopg

import devstack
from tests.devstack.stack import Stack
from tests.servers import free_port


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


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


def test_ensure_again_reuses_the_running_server(stack: Stack) -> None:
    pg = devstack.ensure_postgres(stack.data_dir, port=stack.pg_port)
    assert (pg.started, pg.url, pg.pid) == (False, stack.pg.url, stack.pg.pid)
    # A running server is reported where it really listens, whatever port is asked for.
    assert devstack.ensure_postgres(stack.data_dir, port=free_port()).url == stack.pg.url


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


def test_postgres_logs_under_the_data_dir(stack: Stack) -> None:
    assert (stack.data_dir / "postgres" / "PG_VERSION").read_text().strip() == "18"
    assert "ready to accept connections" in (stack.data_dir / "log" / "postgres.log").read_text()


def test_unreachable_when_nothing_listens() -> None:
    t0 = time.monotonic()
    assert not devstack.postgres_reachable(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", timeout=1)
    assert time.monotonic() - t0 < 5
