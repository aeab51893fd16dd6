"""A Postgres server of a test module's own (embedded), which its tests stop and start: see tests/own_postgres.py.

Database packages are imported inside the fixtures: the training tests under tests/worker/training run on the GPU
machine's image, which has no psycopg, redis or sqlalchemy (tests/test_gpu_image.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tests.own_postgres import OwnPostgres


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnPostgres]:
    from tests.own_postgres import own_postgres

    with own_postgres() as server:
        yield server


@pytest.fixture
def postgres(own_server: OwnPostgres) -> OwnPostgres:
    own_server.start()  # running again, should an earlier test have failed while it was stopped
    return own_server


@pytest.fixture
def engine(postgres: OwnPostgres) -> Engine:
    from db.session import get_engine

    return get_engine(postgres.url)
