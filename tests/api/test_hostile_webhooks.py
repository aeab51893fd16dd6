"""A hostile tenant's webhooks: every way of naming the server's own network is refused, at registration and
again at send time (a name that turns into loopback later is not called), and reply bodies are never kept."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from core import netguard

INTERNAL = [
    "http://127.0.0.1:8000/v1/admin/teams",
    "http://localhost/",
    "http://LocalHost./",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://2130706433/",
    "http://127.1/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    f"http://{socket.gethostname()}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[ff02::1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
]
MALFORMED = [
    "http://x/x\r\nX: 1",
    "http://xn--/",
    "http://[::1",
    "http://host:99999/",
    "http://host:0/",
    "https://[::1]:abc/",
    "http://[v1.x]/",
    "http://user:pass@example.com/",
    "http://user@example.com/",
    "http://exa mple.com/",
    "http://a..b/",
    "ftp://example.com/",
    "/relative",
]
PUBLIC = ipaddress.ip_address("93.184.215.14")  # only ever returned by the fake resolver: never connected to


@pytest.mark.parametrize("url", INTERNAL + MALFORMED)
def test_internal_and_malformed_urls_are_refused_naming_url(api, url: str) -> None:  # type: ignore[no-untyped-def]
    r = api.post("/v1/webhooks", json={"url": url})
    assert r.status_code == 400, (url, r.status_code, r.text)
    assert r.json()["error"]["param"] == "url"
    assert api.get("/v1/webhooks").json()["data"] == []


def test_the_admin_allow_list_opens_only_what_it_names(api, override_settings) -> None:  # type: ignore[no-untyped-def]
    override_settings(webhook_allowed_hosts="127.0.0.1, 10.0.0.0/8")
    assert api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}).status_code == 200
    assert api.post("/v1/webhooks", json={"url": "http://10.1.2.3/hook"}).status_code == 200
    # Listed as written: another spelling of loopback, or another private range, is still refused.
    for url in ("http://127.1/", "http://2130706433/", "http://localhost/", "http://192.168.1.1/"):
        assert api.post("/v1/webhooks", json={"url": url}).status_code == 400, url


class Recorder:
    """A loopback HTTP server that counts what reaches it."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["content-length"]))
                recorder.hosts.append(self.headers["host"])
                body = b"internal secret reply " * 50
                self.send_response(500)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture
def fake_dns() -> Iterator[dict[str, list[netguard.IPAddress]]]:
    """Names the fake resolver answers (what each call returns may be changed by the test); others fail."""
    table: dict[str, list[netguard.IPAddress]] = {}

    def resolve(host: str, port: int) -> list[netguard.IPAddress]:
        if host not in table:
            raise socket.gaierror(f"{host}: not in the fake table")
        return table[host]

    old = netguard.set_resolver(resolve)
    yield table
    netguard.set_resolver(old)


def _end_job_event(team_id: str) -> None:
    from core.enums import JobStatus
    from db.repositories import webhooks
    from db.session import unit_of_work

    with unit_of_work() as session:
        webhooks.record_job_event(session, team_id, "ftjob-hostile", JobStatus.CANCELLED)


def _send_round() -> None:
    from core.settings import get_settings
    from worker.webhooks import deliver_due

    with httpx.Client(timeout=5, follow_redirects=False) as client:
        deliver_due(client, get_settings())


def test_a_name_that_rebinds_to_loopback_after_registration_is_not_called(api, team, fake_dns, recorder) -> None:  # type: ignore[no-untyped-def]
    fake_dns["rebind.example"] = [PUBLIC]
    hook = api.post("/v1/webhooks", json={"url": f"http://rebind.example:{recorder.port}/hook"})
    assert hook.status_code == 200, hook.text
    fake_dns["rebind.example"] = [ipaddress.ip_address("127.0.0.1")]  # the attacker's DNS flips
    _end_job_event(team.team_id)
    _send_round()
    assert recorder.hosts == []  # nothing reached loopback
    [log] = api.get(f"/v1/webhooks/{hook.json()['id']}/deliveries").json()["data"]
    assert log["attempts"] == 1 and log["last_status_code"] is None and log["last_error"] == "blocked_address"


def test_the_send_connects_to_the_checked_address_and_keeps_no_reply_body(
    api, team, fake_dns, recorder, override_settings
) -> None:  # type: ignore[no-untyped-def]
    # An admin allows loopback by network; the name resolves there, and the sender connects to that address
    # itself (Host keeps the name): the HTTP client never looks the name up again.
    override_settings(webhook_allowed_hosts="127.0.0.0/8")
    fake_dns["hooks.internal.example"] = [ipaddress.ip_address("127.0.0.1")]
    hook = api.post("/v1/webhooks", json={"url": f"http://hooks.internal.example:{recorder.port}/hook"})
    assert hook.status_code == 200, hook.text
    _end_job_event(team.team_id)
    _send_round()
    assert recorder.hosts == [f"hooks.internal.example:{recorder.port}"]
    [log] = api.get(f"/v1/webhooks/{hook.json()['id']}/deliveries").json()["data"]
    assert log["last_status_code"] == 500 and log["last_error"] == "HTTP 500"  # no "internal secret reply"


def test_a_poisoned_row_costs_its_own_delivery_one_attempt(api, team, fake_dns, recorder) -> None:  # type: ignore[no-untyped-def]
    """A URL stored before validation existed (or edited in the database) fails its try; others still go."""
    from db.models import WebhookEndpoint
    from db.repositories import webhooks
    from db.session import unit_of_work

    with unit_of_work() as session:
        for url in ("http://x/x\r\nX: 1", "http://xn--/", "http://[::1"):
            webhooks.add_endpoint(
                session, WebhookEndpoint(id=f"we_{abs(hash(url))}", team_id=team.team_id, url=url, secret="whsec_AA==",
                                         events=["fine_tuning.job.cancelled"]),
            )  # fmt: skip
    _end_job_event(team.team_id)
    _send_round()
    with unit_of_work() as session:
        endpoints = webhooks.list_endpoints(session, team.team_id)
        rows = [(d.attempts, d.last_error) for e in endpoints for d in webhooks.list_deliveries(session, e.id)]
    assert rows == [(1, "invalid_url")] * 3
