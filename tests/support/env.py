"""This process's settings pointed at other values for a while, through pytest's MonkeyPatch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def forget_settings() -> None:
    """Settings and the default engine are cached per process: rebuild them from the environment on next use."""
    from core.settings import get_settings
    from db.session import get_engine

    # The default engine's pooled connections, before its cache entry goes; without servers configured there is
    # no default engine to close (get_engine refuses to make one).
    with contextlib.suppress(RuntimeError):
        get_engine().dispose()
    get_engine.cache_clear()
    get_settings.cache_clear()


@contextmanager
def settings_env(**env: str) -> Iterator[None]:
    """Set environment variables (settings) inside the block; after it, restore them and forget the caches.

    For session fixtures; a test's fixture uses its `monkeypatch.setenv` and `forget_settings` instead.
    """
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            forget_settings()
            yield
    finally:
        forget_settings()
