"""Container health check for a GPU worker: exit 0 when a worker on this host sent a heartbeat recently.

`python -m worker.health` (Dockerfile.gpu HEALTHCHECK, Kubernetes liveness probe). A hung worker stops its
heartbeat thread's progress only if the process is wedged, so this also catches a dead database connection.
"""

from __future__ import annotations

import socket
import sys
from datetime import UTC, datetime, timedelta

from core.settings import get_settings
from db.repositories import workers
from db.session import unit_of_work


def healthy() -> bool:
    settings = get_settings()
    since = datetime.now(UTC) - timedelta(seconds=settings.worker_lost_seconds)
    with unit_of_work() as session:
        live = workers.live_workers(session, since)
    host = socket.gethostname()
    return any(w.hostname == host or w.id == settings.worker_id for w in live)


if __name__ == "__main__":
    try:
        ok = healthy()
    except Exception as exc:  # the database is unreachable: not healthy
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    print("ok" if ok else "unhealthy: no recent heartbeat from this host", file=sys.stderr)
    sys.exit(0 if ok else 1)
