"""The request's unit of work: a route's writes commit when it returns, and only then do its side effects run
(live events published, the dispatcher's doorbell rung); a request that fails rolls back and causes neither."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import CurrentTeam, SessionDep
from api.errors import install_error_handlers
from api.services import jobs as jobs_service
from core.errors import Conflict
from tests.api import pool_helpers
from tests.api.pool_helpers import queue, submit
from tests.support.teams import TeamKey

cancel_leftovers = pool_helpers.cancel_leftovers  # fixture: a later test's dispatch round must not find these jobs


@pytest.fixture
def paused_job(api: Any, team: TeamKey, cancel_leftovers: list[str]) -> str:
    """A job paused while queued: resuming it is a queueing that the dispatcher must hear of."""
    job_id = str(submit(api, team)["id"])
    cancel_leftovers.append(job_id)
    queue(job_id)
    r = api.post(f"/v1/fine_tuning/jobs/{job_id}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text
    return job_id


@pytest.fixture
def bus(service_urls: tuple[str, str]) -> Iterator[tuple[redis.Redis, Any]]:
    """Redis with the doorbell emptied, and a subscription to the job-event channel."""
    from core.tasks import dispatch_doorbell
    from db import eventbus

    client = redis.Redis.from_url(service_urls[1])
    client.delete(dispatch_doorbell())
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(eventbus.channel())
    assert sub.get_message(timeout=1.0) is None  # consumes the subscription confirmation
    yield client, sub
    sub.close()
    client.close()


def _rings(client: redis.Redis) -> int:
    from core.tasks import dispatch_doorbell

    return int(client.llen(dispatch_doorbell()))


def _failing_app() -> FastAPI:
    """A route that resumes a job through the real service and then fails, on the real request session."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/resume-then-fail/{job_id}")
    def resume_then_fail(job_id: str, session: SessionDep, team: CurrentTeam) -> None:
        jobs_service.resume_job(session, team, job_id)  # writes `queued`, a status event, asks for a ring
        raise Conflict("something after the write went wrong")

    return app


def test_rolled_back_request_rings_no_doorbell_and_publishes_nothing(
    api: Any, team: TeamKey, paused_job: str, bus: tuple[redis.Redis, Any]
) -> None:
    client, sub = bus
    events_before = api.get(f"/v1/fine_tuning/jobs/{paused_job}/events", params={"limit": 100}).json()["data"]
    with TestClient(_failing_app(), headers={"Authorization": f"Bearer {team.key}"}) as failing:
        r = failing.post(f"/resume-then-fail/{paused_job}")
    assert r.status_code == 409, r.text
    assert api.get(f"/v1/fine_tuning/jobs/{paused_job}").json()["status"] == "paused"  # rolled back
    assert api.get(f"/v1/fine_tuning/jobs/{paused_job}/events", params={"limit": 100}).json()["data"] == events_before
    assert _rings(client) == 0
    # Publishing happens inside the commit, before the response: had it happened, it would be here by now.
    assert sub.get_message(timeout=0.5) is None


def test_committed_queueing_rings_the_doorbell_and_publishes_its_event(
    api: Any, paused_job: str, bus: tuple[redis.Redis, Any]
) -> None:
    import json

    client, sub = bus
    r = api.post(f"/v1/fine_tuning/jobs/{paused_job}/resume")
    assert r.status_code == 200 and r.json()["status"] == "queued", r.text
    assert _rings(client) == 1
    newest = api.get(f"/v1/fine_tuning/jobs/{paused_job}/events", params={"limit": 1}).json()["data"][0]
    assert newest["kind"] == "status" and newest["data"] == {"status": "queued"}
    message = sub.get_message(timeout=2.0)
    assert message is not None
    assert json.loads(message["data"]) == {"job_id": paused_job, "seq": int(newest["id"].removeprefix("ftevent-"))}


def test_committed_job_creation_rings_the_doorbell(
    api: Any, team: TeamKey, bus: tuple[redis.Redis, Any], cancel_leftovers: list[str]
) -> None:
    client, _ = bus
    cancel_leftovers.append(str(submit(api, team)["id"]))
    assert _rings(client) == 1  # the dispatcher validates the new job without waiting for its poll
