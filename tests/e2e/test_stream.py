"""The SSE event stream against the real processes: a tiny job streamed start to end, reconnects, 404s, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from cli.sse import SseEvent, iter_sse, open_stream
from core.settings import get_settings
from tests.support.service import client_for, create_job, wait_pause_saved, wait_status, wait_step
from tests.support.waiting import wait_until


@pytest.fixture
def http(running_service, team) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with client_for(running_service.base_url, team.key) as client:
        yield client


def read_stream(
    http: httpx.Client,
    job_id: str,
    last_event_id: int | None = None,
    until: Callable[[list[SseEvent]], bool] = lambda _: False,
) -> list[SseEvent]:
    """Events until the stream's `end` (or until `until(events)` holds, then disconnect)."""
    got: list[SseEvent] = []
    with open_stream(http, job_id, last_event_id) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for event in iter_sse(r):
            got.append(event)
            if event.event == "end" or until(got):
                break
    return got


def all_event_seqs(http: httpx.Client, job_id: str) -> list[int]:
    """Every stored event of the job, oldest first, through the paginated OpenAI list."""
    seqs: list[int] = []
    after = None
    while True:
        params = {"limit": 100, **({"after": after} if after else {})}
        page = http.get(f"/fine_tuning/jobs/{job_id}/events", params=params).json()
        seqs += [int(e["id"].removeprefix("ftevent-")) for e in page["data"]]
        if not page["has_more"]:
            return sorted(seqs)
        after = page["data"][-1]["id"]


def watchers(base_url: str) -> int:
    return int(httpx.get(base_url + "/healthz/stream").json()["watchers"])


def test_stream_follows_a_job_from_start_to_end(http) -> None:  # type: ignore[no-untyped-def]
    job_id = create_job(http, with_validation=True, eval_every_steps=4, save_every_steps=4)

    events = read_stream(http, job_id)

    end = events.pop()
    assert (end.event, end.data) == ("end", {"status": "succeeded"})
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)) == all_event_seqs(http, job_id)  # everything stored, in order, once
    assert all(e.data["object"] == "fine_tuning.job.event" and e.data["kind"] == e.event for e in events)
    statuses = [e.data["data"]["status"] for e in events if e.event == "status"]
    assert statuses == ["validating_files", "queued", "running", "succeeded"]
    streamed = [e.data["data"] for e in events if e.event == "metrics"]
    stored = http.get(f"/fine_tuning/jobs/{job_id}/metrics").json()["data"]
    assert streamed == stored and [m["step"] for m in stored] == list(range(1, 9))  # 16 rows / batch 2
    assert any(m["valid_loss"] is not None for m in streamed)
    assert [e.data["data"]["step"] for e in events if e.event == "checkpoint"] == [4]
    assert {e.data["data"]["kind"] for e in events if e.event == "artifact"} == {"adapter", "checkpoint"}

    job = http.get(f"/fine_tuning/jobs/{job_id}").json()
    assert job["progress"]["percent"] == 100.0 and job["estimated_finish"] is None


def test_reconnecting_with_last_event_id_has_no_gaps_or_duplicates(http, running_service) -> None:  # type: ignore[no-untyped-def]
    job_id = create_job(http, max_steps=16)
    first = read_stream(http, job_id, until=lambda got: sum(e.event == "metrics" for e in got) >= 3)
    assert first[-1].event == "metrics"  # disconnected mid-run

    rest = read_stream(http, job_id, last_event_id=first[-1].id)

    assert rest.pop().data == {"status": "succeeded"}
    ids = [e.id for e in first + rest]
    assert ids == all_event_seqs(http, job_id)
    steps = [e.data["data"]["step"] for e in first + rest if e.event == "metrics"]
    assert steps == list(range(1, 17))


def test_disconnected_watchers_free_their_subscriptions(http, running_service) -> None:  # type: ignore[no-untyped-def]
    job_id = create_job(http, max_steps=40)
    with contextlib.ExitStack() as stack:
        readers = [iter_sse(stack.enter_context(open_stream(http, job_id))) for _ in range(5)]
        for reader in readers:
            next(reader)  # connected and replaying (a dropped reader would close its connection)
        assert watchers(running_service.base_url) == 5
    wait_until(lambda: watchers(running_service.base_url) == 0, 10, message="closed streams still count as watchers")
    http.post(f"/fine_tuning/jobs/{job_id}/cancel")


def test_stream_of_an_unknown_or_foreign_job_is_404(http, running_service, make_team) -> None:  # type: ignore[no-untyped-def]
    job_id = create_job(http)
    http.post(f"/fine_tuning/jobs/{job_id}/cancel")
    with client_for(running_service.base_url, make_team().key) as other:
        for client, jid in ((other, job_id), (http, "ftjob-nope")):
            with open_stream(client, jid) as r:
                r.read()
                assert r.status_code == 404 and r.json()["error"]["param"] == "fine_tuning_job_id"
    # The owner still gets the (finished) stream: replay, then `end`.
    assert read_stream(http, job_id)[-1].data == {"status": "cancelled"}


def test_a_silent_stream_still_pings(http, monkeypatch, service_settings) -> None:  # type: ignore[no-untyped-def]
    """A watcher of a paused job (no new events) still gets keep-alive comments: the feed's poll is their clock."""
    from api.services import stream

    job_id = create_job(http, max_steps=300)
    wait_step(http, job_id, 1)
    assert http.post(f"/fine_tuning/jobs/{job_id}/pause").status_code == 200
    assert wait_status(http, job_id, {"paused", "succeeded", "failed", "cancelled"})["status"] == "paused"
    wait_pause_saved(http, job_id)  # the worker's last events are in: from here on the job is silent
    monkeypatch.setenv("TUNEPOOL_STREAM_PING_SECONDS", "0.5")  # restored with the service settings after the test
    get_settings.cache_clear()
    monkeypatch.setattr(stream, "POLL_SECONDS", 0.2)

    async def first_live_chunk(after: int) -> bytes:
        frames = stream.stream_job(job_id, after)
        try:
            return await asyncio.wait_for(anext(frames), 10)
        finally:
            await frames.aclose()

    assert asyncio.run(first_live_chunk(all_event_seqs(http, job_id)[-1])) == b": ping\n\n"
    http.post(f"/fine_tuning/jobs/{job_id}/cancel")
