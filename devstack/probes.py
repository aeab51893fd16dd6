"""Is a server's process alive, is its port open, what did its log say last."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from devstack.endpoint import HOST


def proc_alive(pid: int, comm_prefix: str | None = None) -> bool:
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


def wait_gone(pid: int, comm_prefix: str, timeout: float) -> bool:
    """Wait until `pid` is no longer a live `comm_prefix` process; False if it outlived `timeout`."""
    deadline = time.monotonic() + timeout
    while proc_alive(pid, comm_prefix):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
