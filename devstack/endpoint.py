"""What an embedded server gives back (its URL and pid) and how starting one fails."""

from __future__ import annotations

from dataclasses import dataclass

HOST = "127.0.0.1"  # every embedded server listens on loopback only


class DevstackError(RuntimeError):
    """An embedded server could not be started, reached or stopped."""


@dataclass
class Endpoint:
    url: str
    pid: int | None
    started: bool  # False when it was already running
