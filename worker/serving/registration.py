"""A serving backend's row in the pool: registered on start, heartbeat with its loaded adapters, removed on stop.

Torch-free, so vLLM's registrar (worker/serving/registrar.py) and the built-in engine share it."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from db.repositories import serving
from db.session import unit_of_work

log = logging.getLogger(__name__)


class Registration:
    """Heartbeats from a background thread every `period` seconds; a failed beat is logged and retried next time."""

    def __init__(
        self,
        backend_id: str,
        base_model: str,
        url: str,
        engine: str,
        device: str,
        max_adapters: int,
        adapters: Callable[[], list[str]],
        period: float,
    ) -> None:
        self.backend_id, self.adapters, self.period = backend_id, adapters, period
        self.values = {
            "base_model": base_model,
            "url": url,
            "engine": engine,
            "hostname": socket.gethostname(),
            "device": device,
            "max_adapters": max_adapters,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="serving-heartbeat", daemon=True)

    def beat(self) -> None:
        with unit_of_work() as session:
            serving.heartbeat(session, self.backend_id, loaded_adapters=self.adapters(), **self.values)

    def start(self) -> None:
        try:
            self.beat()  # registered before the first request can look for it
        except Exception:  # the database, or vLLM behind a sidecar, is not up yet: the loop retries
            log.warning("could not register serving backend %s yet", self.backend_id, exc_info=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            with unit_of_work() as session:
                serving.remove_backend(session, self.backend_id)
        except Exception:  # the database may be gone at shutdown; the row then ages out as lost
            log.warning("could not deregister serving backend %s", self.backend_id, exc_info=True)

    def serve(self, app: Any, host: str, port: int) -> None:
        """Register, answer on host:port until stopped (SIGTERM, Ctrl-C), deregister."""
        self.start()
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning")
        finally:
            self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.beat()
            except Exception:
                log.warning("serving heartbeat failed", exc_info=True)
