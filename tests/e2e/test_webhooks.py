"""Webhooks end to end: the real service signs, sends and retries; a real local receiver verifies each POST."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from openai import OpenAI

from tests.support.data import CHAT, TINY_MODEL, jsonl
from tests.support.waiting import wait_until


@dataclass
class Receipt:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A local HTTP server answering each path with a scripted list of status codes (then the last forever)."""

    url: str
    script: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)  # seconds a path waits before it answers
    received: list[Receipt] = field(default_factory=list)

    def wait(self, path: str, count: int, timeout: float = 60) -> list[Receipt]:
        def got() -> list[Receipt]:
            return [r for r in self.received if r.path == path]

        return wait_until(
            lambda: got() if len(got()) >= count else None,
            timeout,
            message=lambda: f"{path}: {len(got())} of {count} POSTs",
        )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            time.sleep(state.delays.get(self.path, 0))
            codes = state.script.setdefault(self.path, [200])
            code = codes.pop(0) if len(codes) > 1 else codes[0]
            state.received.append(Receipt(self.path, {k.lower(): v for k, v in self.headers.items()}, body, code))
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(running_service, team) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {team.key}"}
    with httpx.Client(base_url=running_service.base_url, headers=headers, timeout=30) as c:
        yield c


def _verified(receipt: Receipt, secret: str) -> dict:  # type: ignore[type-arg]
    """Check the signature the way a customer would: with the official openai SDK's verifier."""
    OpenAI(api_key="unused").webhooks.verify_signature(receipt.body, receipt.headers, secret=secret)
    return dict(json.loads(receipt.body))


def _deliveries(client: httpx.Client, webhook_id: str, until: str, timeout: float = 30) -> list[dict]:  # type: ignore[type-arg]
    log: list[dict] = []  # type: ignore[type-arg]

    def settled() -> list[dict] | None:  # type: ignore[type-arg]
        log[:] = client.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["data"]
        return list(log) if log and all(d["status"] == until for d in log) else None

    return wait_until(settled, timeout, message=lambda: f"deliveries of {webhook_id} not all {until}: {log}")


def _new_job(client: httpx.Client) -> str:
    file_id = client.post("/v1/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"})
    r = client.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id.json()["id"]})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_cancel_webhook_is_signed_retried_on_500_and_logged(client, receiver, make_team) -> None:  # type: ignore[no-untyped-def]
    receiver.script = {"/flaky": [500, 500, 200], "/down": [500], "/success-only": [200]}
    flaky = client.post("/v1/webhooks", json={"url": receiver.url + "/flaky"}).json()
    down = client.post("/v1/webhooks", json={"url": receiver.url + "/down"}).json()
    picky = client.post(
        "/v1/webhooks", json={"url": receiver.url + "/success-only", "events": ["fine_tuning.job.succeeded"]}
    ).json()
    assert flaky["secret"].startswith("whsec_") and flaky["events"] == [
        "fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled",
    ]
    listed = client.get("/v1/webhooks").json()["data"]
    assert {w["id"] for w in listed} == {flaky["id"], down["id"], picky["id"]}
    assert all(w["secret"] is None for w in listed)  # shown once, at creation

    job_id = _new_job(client)
    assert client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"

    # The flaky receiver answered 500 twice; the third, identical, delivery got through.
    posts = receiver.wait("/flaky", 3)
    assert [p.answered for p in posts] == [500, 500, 200]
    events = [_verified(p, flaky["secret"]) for p in posts]
    assert events[0]["type"] == "fine_tuning.job.cancelled" and events[0]["object"] == "event"
    assert events[0]["data"] == {"id": job_id} and events[0]["id"].startswith("evt")
    assert all(e == events[0] for e in events) and len({p.headers["webhook-id"] for p in posts}) == 1
    [flaky_log] = _deliveries(client, flaky["id"], "succeeded")
    assert flaky_log["attempts"] == 3 and flaky_log["last_status_code"] == 200 and flaky_log["delivered_at"]
    assert flaky_log["type"] == "fine_tuning.job.cancelled" and flaky_log["id"] == posts[0].headers["webhook-id"]

    # An endpoint that always fails is given up after TUNEPOOL_WEBHOOK_MAX_ATTEMPTS (4 in these tests).
    [down_log] = _deliveries(client, down["id"], "failed")
    assert down_log["attempts"] == 4 and down_log["last_status_code"] == 500 and "HTTP 500" in down_log["last_error"]
    assert len(receiver.wait("/down", 4)) == 4
    # A wrong secret does not verify: the signature really covers this endpoint's secret.
    with pytest.raises(Exception, match="signature"):
        _verified(posts[0], down["secret"])
    # Not subscribed to cancellations: nothing sent, nothing logged.
    assert not [r for r in receiver.received if r.path == "/success-only"]
    assert client.get(f"/v1/webhooks/{picky['id']}/deliveries").json()["data"] == []

    # Team-scoped: another team sees neither the endpoint nor its log; deleting stops it.
    other = make_team()
    other_headers = {"Authorization": f"Bearer {other.key}"}
    assert client.get(f"/v1/webhooks/{flaky['id']}/deliveries", headers=other_headers).status_code == 404
    assert client.get("/v1/webhooks", headers=other_headers).json()["data"] == []
    assert client.delete(f"/v1/webhooks/{flaky['id']}").json()["deleted"] is True
    assert client.get(f"/v1/webhooks/{flaky['id']}").status_code == 404


def test_bad_webhook_urls_and_events_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/webhooks", json={"url": "ftp://example.com/hook"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "url"
    r = client.post("/v1/webhooks", json={"url": "http://example.com/hook", "events": ["fine_tuning.job.paused"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "events"


def test_training_success_and_failure_send_their_webhooks(client, receiver, team, service_settings) -> None:  # type: ignore[no-untyped-def]
    from worker import runner

    hook = client.post("/v1/webhooks", json={"url": receiver.url + "/hook"}).json()
    file_id = client.post("/v1/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"})
    r = client.post(
        "/v1/fine_tuning/jobs",
        json={
            "model": TINY_MODEL,
            "training_file": file_id.json()["id"],
            "hyperparameters": {"n_epochs": 1, "batch_size": 2},
            "quantization": {"mode": "none"},
            "training": {"max_seq_length": 64, "max_steps": 1},
            "artifacts": ["adapter"],
        },
    )
    trained = r.json()["id"]
    [post] = receiver.wait("/hook", 1, timeout=300)  # the real worker trains it; the dispatcher sends the event
    event = _verified(post, hook["secret"])
    assert event["type"] == "fine_tuning.job.succeeded" and event["data"] == {"id": trained}
    assert client.get(f"/v1/fine_tuning/jobs/{trained}").json()["status"] == "succeeded"

    # A failure recorded by the worker's own finish step (as after an OOM) sends `failed`.
    from core.enums import ErrorSide
    from db.models import TrainingJob
    from db.repositories import jobs
    from db.session import unit_of_work
    from worker.outcome import JobOutcome

    failing = f"ftjob-whfail{trained[-8:]}"
    with unit_of_work() as session:  # a job some worker is running (no real worker takes a running job)
        jobs.add_job(
            session,
            TrainingJob(
                id=failing, team_id=team.team_id, model=TINY_MODEL, training_file_id=file_id.json()["id"],
                spec={}, seed=1, status="running", step=0, attempts=1, cancel_requested=False, worker_id="gone",
            ),
        )
    runner.finish_job(failing, JobOutcome.failed("out_of_memory", "CUDA out of memory", ErrorSide.SYSTEM))
    posts = receiver.wait("/hook", 2)
    event = _verified(posts[1], hook["secret"])
    assert event["type"] == "fine_tuning.job.failed" and event["data"] == {"id": failing}
    with unit_of_work() as session:
        assert jobs.get_job_by_id(session, failing).status == "failed"


def test_a_slow_and_a_poisoned_endpoint_delay_no_other_team(  # type: ignore[no-untyped-def]
    client, receiver, team, make_team, service_settings
) -> None:
    """Team A's endpoints hang for 6 s or cannot even be sent to; team B's delivery still lands at once."""
    from db.models import WebhookEndpoint
    from db.repositories import webhooks
    from db.session import unit_of_work

    receiver.delays = {"/slow": 6.0}
    for n in range(3):
        assert client.post("/v1/webhooks", json={"url": f"{receiver.url}/slow?n={n}"}).status_code == 200
    with unit_of_work() as session:  # rows from before URL validation: they must fail alone
        for n, url in enumerate(("http://x/x\r\nX: 1", "http://xn--/")):
            endpoint = WebhookEndpoint(id=f"we_poison{n}{time.time_ns()}", team_id=team.team_id, url=url,
                                       secret="whsec_AA==", events=["fine_tuning.job.cancelled"])  # fmt: skip
            webhooks.add_endpoint(session, endpoint)
    other = make_team()
    with httpx.Client(base_url=str(client.base_url), headers={"Authorization": f"Bearer {other.key}"}) as b:
        good = b.post("/v1/webhooks", json={"url": receiver.url + "/good"}).json()
        slow_jobs = [_new_job(client) for _ in range(3)]
        good_job = _new_job(b)
        for job_id in slow_jobs:
            client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
        cancelled = time.monotonic()
        assert b.post(f"/v1/fine_tuning/jobs/{good_job}/cancel").json()["status"] == "cancelled"
        [post] = receiver.wait("/good", 1, timeout=30)
        waited = time.monotonic() - cancelled
        # The sender polls every 0.5 s; nine 6-second sends of team A ahead of it must not add to that.
        assert waited < 3.0, f"team B's delivery waited {waited:.1f} s behind team A's endpoints"
        assert _verified(post, good["secret"])["data"] == {"id": good_job}
    # Each poisoned delivery is a failed try of its own (it used to stall the round with 0 attempts).
    def poisoned_deliveries() -> list[tuple[int, str | None]]:
        with unit_of_work() as session:
            return [(d.attempts, d.last_error) for e in webhooks.list_endpoints(session, team.team_id)
                    if "/slow" not in e.url for d in webhooks.list_deliveries(session, e.id)]  # fmt: skip

    def all_tried() -> list[tuple[int, str | None]] | None:
        got = poisoned_deliveries()
        return got if len(got) == 6 and all(n >= 1 for n, _ in got) else None

    try:
        poisoned = wait_until(all_tried, 30)
    except TimeoutError:
        poisoned = poisoned_deliveries()
    assert len(poisoned) == 6 and all(n >= 1 and error == "invalid_url" for n, error in poisoned), poisoned
