"""The API process killed and started again while a job trains and a client watches its event stream.

Training does not depend on the API: the job runs on, and the watcher, reconnecting with Last-Event-ID, gets
every event exactly once — the ones stored while no API was up are replayed from Postgres.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from cli.sse import SseEvent, iter_sse, open_stream
from tests.faultstack import FaultStack
from tests.support.waiting import wait_until

STEPS = 160
KILL_AT_STEP = 10


def read_until(events: Iterator[SseEvent], got: list[SseEvent], step: int) -> None:
    """Append events until a metrics event of `step` (or later) arrived."""
    for event in events:
        got.append(event)
        if event.event == "metrics" and event.data["data"]["step"] >= step:
            return
    raise AssertionError(f"the stream ended before step {step}: {got[-1:]}")


def wait_for_step(stack: FaultStack, job_id: str, step: int, timeout: float = 60) -> None:
    seen: list[Any] = []

    def reached() -> bool:
        seen[:] = [job := stack.job_row(job_id)]
        if job.step >= step:
            return True
        assert job.status == "running", f"{job_id} is {job.status} at step {job.step}"
        return False

    wait_until(reached, timeout, message=lambda: f"{job_id} stuck at step {seen[0].step}")


def reconnect(stack: FaultStack, http: httpx.Client, job_id: str, last_event_id: int) -> tuple[list[SseEvent], str]:
    """What a watcher does after its stream broke: retry with Last-Event-ID until the API answers, read to `end`.

    Also returns the job's status when the first event came back (from Postgres, the record).
    """

    def attempt() -> tuple[list[SseEvent], str] | None:
        try:
            with open_stream(http, job_id, last_event_id) as r:
                assert r.status_code == 200, r.read()
                got: list[SseEvent] = []
                status_when_back = ""
                for event in iter_sse(r):
                    got.append(event)
                    status_when_back = status_when_back or stack.job_row(job_id).status
                    if event.event == "end":
                        return got, status_when_back
                raise AssertionError(f"the stream closed without `end` after {len(got)} events")
        except httpx.ConnectError:
            return None

    return wait_until(attempt, 60, message="the API never came back")


def test_a_watcher_survives_an_api_restart_mid_run(make_fault_stack) -> None:  # type: ignore[no-untyped-def]
    stack: FaultStack = make_fault_stack(workers=["w1"])
    job_id = stack.submit(steps=STEPS, save_every_steps=100_000)
    first: list[SseEvent] = []
    with stack.client() as http:
        with open_stream(http, job_id) as r:
            assert r.status_code == 200
            events = iter_sse(r)
            read_until(events, first, KILL_AT_STEP)
            stack.kill_api()
            assert stack.job_row(job_id).status == "running"  # the kill landed mid-run
            try:  # frames already in the socket still arrive, then the stream breaks: no `end`
                for event in events:
                    first.append(event)
            except httpx.TransportError:
                pass
            else:
                raise AssertionError("the stream of a killed API ended cleanly")
        assert all(e.event != "end" for e in first)
        last_step = max(e.data["data"]["step"] for e in first if e.event == "metrics")
        wait_for_step(stack, job_id, last_step + 5)  # training goes on without the API; its events are stored

        stack.start_api(wait=False)
        last_id = max(e.id for e in first if e.id is not None)
        rest, status_when_back = reconnect(stack, http, job_id, last_id)
    # Still training when the watcher came back: it got the events stored meanwhile (replayed) and live ones.
    assert status_when_back == "running"

    end = rest.pop()
    assert end.data == {"status": "succeeded"}
    received = [e.id for e in first + rest]
    stored = [int(e["id"].removeprefix("ftevent-")) for e in stack.events(job_id)]
    assert received == stored  # every stored event once, in order: no gap, no duplicate across the restart
    steps = [e.data["data"]["step"] for e in first + rest if e.event == "metrics"]
    assert steps == list(range(1, STEPS + 1))
    assert stack.attempts(job_id) == 1  # training was not restarted
    assert sum(e["message"].startswith("Fine-tuning job started") for e in stack.events(job_id)) == 1
