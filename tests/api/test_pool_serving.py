"""Serving backends on GET /v1/pool: registered rows, lost ones, and adapter names only for their own team."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tests.support.data import TINY_MODEL


@pytest.fixture
def backend_rows(service_urls) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """Ids of serving_backend rows the test registers; removed afterwards."""
    from db.repositories import serving
    from db.session import unit_of_work

    ids: list[str] = []
    yield ids
    with unit_of_work() as session:
        for backend_id in ids:
            serving.remove_backend(session, backend_id)


def test_pool_lists_serving_backends_with_only_the_callers_adapter_names(api, team, make_team, backend_rows) -> None:  # type: ignore[no-untyped-def]
    from db.repositories import serving
    from db.session import unit_of_work

    other = make_team()
    mine, theirs = f"ft:{TINY_MODEL}:{team.name}::abc", f"ft:{TINY_MODEL}:{other.name}:x:def"
    values = {"base_model": TINY_MODEL, "engine": "builtin", "hostname": "h", "device": "cpu", "max_adapters": 4}
    with unit_of_work() as session:
        serving.heartbeat(session, "srv-up", url="http://a", loaded_adapters=[theirs, mine], **values)
        serving.heartbeat(session, "srv-lost", url="http://b", loaded_adapters=[], **values)
        stale = "UPDATE serving_backend SET last_heartbeat = now() - interval '1 hour' WHERE id = 'srv-lost'"
        session.execute(text(stale))
    backend_rows += ["srv-up", "srv-lost"]

    rows = {b["id"]: b for b in api.get("/v1/pool").json()["serving_backends"]}
    assert rows["srv-up"]["state"] == "up" and rows["srv-lost"]["state"] == "lost"
    assert rows["srv-up"]["loaded_adapters"] == 2 and rows["srv-up"]["max_adapters"] == 4
    assert rows["srv-up"]["own_adapters"] == [mine]  # the other team's fine-tune name is not shown
    assert "url" not in rows["srv-up"]  # internal addresses stay internal


def test_no_live_backend_for_a_base_is_a_503_naming_it(api, backend_rows) -> None:  # type: ignore[no-untyped-def]
    body = {"model": TINY_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = api.post("/v1/chat/completions", json=body)
    assert r.status_code == 503 and TINY_MODEL in r.json()["error"]["message"], r.text
    assert r.json()["error"]["param"] == "model"
