"""`tunepool up` with nothing configured: embedded Postgres and Redis, the service answers with the printed key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import devstack
from tests.servers import free_port


def test_up_starts_embedded_servers_and_prints_a_working_key() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="tunepool-up-"))
    data_dir.chmod(0o755)  # embedded Postgres runs as an unprivileged user when we are root
    port, pg_port, redis_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env = {k: v for k, v in env.items() if not k.startswith("TUNEPOOL_")}
    cmd = [sys.executable, "-m", "cli.main", "up", "--data-dir", str(data_dir), "--port", str(port),
           "--no-smollm2", "--pg-port", str(pg_port), "--redis-port", str(redis_port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = ""
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while "Ctrl-C" not in output and time.monotonic() < deadline and proc.poll() is None:
            output += proc.stdout.readline()
        key = re.search(r"API key \(admin\): (tp-\S+)", output)
        assert key, output
        assert f"127.0.0.1:{pg_port}" in output and f"127.0.0.1:{redis_port}" in output
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key.group(1)}"})
        assert r.status_code == 200 and r.json()["object"] == "list"
        pool = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert pool.json() == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        devstack.stop_all(data_dir)
