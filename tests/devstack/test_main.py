"""`python -m devstack up|status|down` (devstack/__main__.py), as `make clean` and a shell run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import devstack
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_servers_outlive_the_starting_process_and_stop_all_stops_them(fresh_data_dir: Path) -> None:
    data_dir, pg_port, redis_port = fresh_data_dir, free_port(), free_port()
    ports = ["--pg-port", str(pg_port), "--redis-port", str(redis_port)]
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


def test_cli_if_unset_keeps_configured_urls(tmp_path: Path) -> None:
    env_url = "postgresql+psycopg://someone@db.example:5432/prod"
    redis_url = "redis://cache.example:6379/0"
    res = _cli(
        "up", "--if-unset", "--data-dir", str(tmp_path / "var"),
        env={**os.environ, "DATABASE_URL": env_url, "REDIS_URL": redis_url},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"DATABASE_URL={env_url}", f"REDIS_URL={redis_url}"]
    assert not (tmp_path / "var" / "postgres").exists()
