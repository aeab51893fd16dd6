"""A Postgres server of a test module's own (embedded), which its tests stop and start: see tests/own_postgres.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.own_postgres import OwnPostgres, own_postgres


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnPostgres]:
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
