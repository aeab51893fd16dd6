"""devstack/probes.py: a zombie is not alive, a process is known by its name, a listening port is open."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from devstack.probes import port_open, proc_alive, tail, wait_gone


def test_a_live_process_is_alive_by_pid_and_name() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert proc_alive(proc.pid)
        assert proc_alive(proc.pid, Path(sys.executable).name[:15])  # /proc's comm is at most 15 characters
        assert not proc_alive(proc.pid, "postgres")
    finally:
        proc.kill()
        proc.wait()
    assert not proc_alive(proc.pid)
    assert not proc_alive(0) and not proc_alive(-1)


def test_an_unreaped_child_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Not waited on: it stays a zombie (state Z) that kill(pid, 0) would still call alive.
        assert wait_gone(proc.pid, "", timeout=10)
        os.kill(proc.pid, 0)
    finally:
        proc.wait()


def test_port_open_only_while_something_listens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_open(port)
    assert not port_open(port)


def test_tail_gives_the_last_lines_or_says_there_is_no_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)))
    assert tail(log, lines=2) == "line 38\nline 39"
    assert tail(tmp_path / "missing.log") == f"(no log at {tmp_path / 'missing.log'})"
