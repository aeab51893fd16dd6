"""The servers the devstack tests share, and fresh data dirs to start more in."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import devstack


def new_data_dir() -> Path:
    """A data dir in a fresh temp dir (not there yet); the caller removes its parent."""
    # Not pytest's tmp_path: its parents are 0700, and as root Postgres runs as another
    # OS user that must traverse them (devstack would chmod o+x them; keep tests tidy).
    d = Path(tempfile.mkdtemp(prefix="tunepool-devstack-"))
    d.chmod(0o755)
    return d / "var"


@dataclass
class Stack:
    data_dir: Path
    pg_port: int
    redis_port: int
    pg: devstack.Endpoint
    redis: devstack.Endpoint
