"""One way to wait for something in a test: poll a predicate until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.1,
    message: str | Callable[[], str] = "",
) -> T:
    """Call `predicate` every `interval` s until it returns something truthy, and return that.

    Raises TimeoutError after `timeout` s; `message` (or its result, computed then) says what never happened.
    The predicate may assert, so that a state that can never turn good fails at once instead of timing out.
    """
    deadline = time.monotonic() + timeout
    while True:
        if value := predicate():
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise TimeoutError(text or f"{getattr(predicate, '__name__', 'predicate')} did not hold within {timeout}s")
        time.sleep(interval)
