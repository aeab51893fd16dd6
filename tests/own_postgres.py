"""A Postgres server of a test's own (embedded, on a free port), which the test may stop and start again."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import devstack
from tests import servers


@dataclass
class OwnPostgres:
    data_dir: Path
    port: int
    url: str  # its `tunepool` database, migrated

    def stop(self) -> None:
        """pg_ctl stop -m fast: every connection is cut, new ones are refused."""
        devstack.stop_all(self.data_dir)

    def start(self) -> None:
        """Start it again on the same port and data (a no-op while it runs)."""
        devstack.ensure_postgres(self.data_dir, port=self.port)


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """Start a fresh server, migrate its database; stop it and delete its data afterwards."""
    from db.migrate import upgrade
    from db.session import get_engine

    # Not pytest's tmp_path: as root, Postgres runs as another OS user, who must traverse the directories above.
    root = Path(tempfile.mkdtemp(prefix="tunepool-own-pg-"))
    root.chmod(0o755)
    data_dir, port = root / "var", servers.free_port()
    url = ""
    try:
        url = devstack.ensure_postgres(data_dir, port=port).url
        upgrade(url)
        yield OwnPostgres(data_dir, port, url)
    finally:
        if url:
            get_engine(url).dispose()  # this process's pooled connections to a server about to go
        devstack.stop_all(data_dir)
        shutil.rmtree(root, ignore_errors=True)
