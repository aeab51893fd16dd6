"""A hostile tenant's streams against a real uvicorn API: revoking a key (or logging out) ends its open streams
within one ping interval, and open streams per key and per team are capped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from cli import processes
from tests.servers import free_port
from tests.support.data import CHAT, TINY_MODEL, jsonl
from tests.support.teams import TeamKey
from tests.support.waiting import wait_until

PING_S = 1.0
PER_KEY, PER_TEAM = 2, 3
# The next ping comes at most a feed tick (a quarter ping) late; the rest is slack for two loaded cores.
CLOSE_WITHIN_S = PING_S * 1.25 + 0.75


@pytest.fixture(scope="module")
def server(service_urls, data_dir) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The API alone (no dispatcher: jobs stay `validating_files`, so their streams stay open)."""
    db_url, redis_url = service_urls
    env = processes.service_env(
        db_url,
        redis_url,
        data_dir,
        TUNEPOOL_STREAM_PING_SECONDS=str(PING_S),
        TUNEPOOL_MAX_STREAMS_PER_KEY=str(PER_KEY),
        TUNEPOOL_MAX_STREAMS_PER_TEAM=str(PER_TEAM),
    )
    port = free_port()
    api = processes.start_api(env, data_dir / "log-hostile-streams", port=port)
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api)
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop([api])


@dataclass
class Watcher:
    """One open stream, read in a thread: the lines it got and when it ended."""

    status: int = 0
    lines: list[str] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    ended_at: float | None = None

    def pinged(self) -> bool:
        return ": ping" in self.lines


def watch(client: httpx.Client, path: str) -> Watcher:
    w = Watcher()

    def run() -> None:
        try:
            with client.stream("GET", path, timeout=httpx.Timeout(10, read=30)) as r:
                w.status = r.status_code
                w.opened.set()
                for line in r.iter_lines():
                    w.lines.append(line)
        except httpx.HTTPError:
            pass
        finally:
            w.ended_at = time.monotonic()
            w.opened.set()

    threading.Thread(target=run, daemon=True).start()
    assert w.opened.wait(15)
    return w


def wait_for(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, interval=0.05)


def client_for(server: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def new_job(client: httpx.Client) -> str:
    file_id = client.post("/v1/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"})
    r = client.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id.json()["id"]})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def stream_path(job_id: str) -> str:
    return f"/v1/fine_tuning/jobs/{job_id}/events/stream"


def test_revoking_a_key_closes_its_open_stream_within_a_ping(server: str, make_team) -> None:  # type: ignore[no-untyped-def]
    member, admin = make_team(), make_team(is_admin=True)
    with client_for(server, member.key) as http, client_for(server, admin.key) as ops:
        job_id = new_job(http)
        w = watch(http, stream_path(job_id))
        assert w.status == 200
        wait_for(w.pinged)  # live, past the replay
        [key] = ops.get(f"/v1/admin/teams/{member.team_id}/keys").json()["data"]
        revoked = time.monotonic()
        assert ops.delete(f"/v1/admin/teams/{member.team_id}/keys/{key['id']}").status_code == 200
        wait_for(lambda: w.ended_at is not None, timeout=10)
        assert w.ended_at is not None and w.ended_at - revoked <= CLOSE_WITHIN_S, w.ended_at - revoked
        assert "event: error" in w.lines and any("invalid_api_key" in line for line in w.lines)
        assert http.get(stream_path(job_id)).status_code == 401
        ops.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")


def test_logout_closes_the_dashboard_stream_within_a_ping(server: str, make_team) -> None:  # type: ignore[no-untyped-def]
    member: TeamKey = make_team()
    with client_for(server, member.key) as http, httpx.Client(base_url=server, timeout=30) as browser:
        job_id = new_job(http)
        signed_in = browser.post("/login", data={"api_key": member.key})
        assert signed_in.status_code == 303
        # The cookie is Secure (browsers trust loopback; httpx does not send it over http): send it by hand.
        browser.headers["cookie"] = f"tunepool_session={signed_in.cookies['tunepool_session']}"
        csrf = browser.get("/jobs").text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        w = watch(browser, f"/jobs/{job_id}/events/stream")
        assert w.status == 200
        wait_for(w.pinged)
        logged_out = time.monotonic()
        assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
        wait_for(lambda: w.ended_at is not None, timeout=10)
        assert w.ended_at is not None and w.ended_at - logged_out <= CLOSE_WITHIN_S
        http.post(f"/fine_tuning/jobs/{job_id}/cancel")


def test_open_streams_are_capped_per_key_and_per_team(server: str, make_team) -> None:  # type: ignore[no-untyped-def]
    from api.services import teams
    from db.session import unit_of_work

    member, other = make_team(), make_team()
    with unit_of_work() as session:
        _, second_key = teams.create_api_key(session, member.team_id, "second")
    a, b, c = client_for(server, member.key), client_for(server, second_key), client_for(server, other.key)
    with a, b, c:
        job_id, other_job = new_job(a), new_job(c)
        first = [watch(a, stream_path(job_id)) for _ in range(PER_KEY)]
        assert [w.status for w in first] == [200] * PER_KEY
        over_key = a.get(stream_path(job_id))
        assert over_key.status_code == 429 and "API key" in over_key.json()["error"]["message"]
        assert watch(b, stream_path(job_id)).status == 200  # the team's third
        over_team = b.get(stream_path(job_id))
        assert over_team.status_code == 429 and "team" in over_team.json()["error"]["message"]
        assert watch(c, stream_path(other_job)).status == 200  # another team is not affected
    # Closed streams give their slots back.
    with client_for(server, member.key) as again:
        deadline = time.monotonic() + 15
        while (status := watch(again, stream_path(job_id)).status) == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
        again.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
