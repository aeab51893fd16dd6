"""Webhook sender: delivers the outbox rows that job endings wrote, signed, retried with exponential backoff.

It runs as a thread of the dispatcher (`python -m worker.dispatcher`) or alone (`python -m worker.webhooks`).
Rows are leased with SKIP LOCKED, so any number of senders share the work and none holds a transaction
across an HTTP call; a crash mid-send only delays that delivery until its lease runs out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from core import netguard
from core.logging import configure_logging, log_context
from core.settings import Settings, get_settings
from db.repositories import webhooks as repo
from db.session import unit_of_work
from worker import dbretry

log = logging.getLogger(__name__)
SECRET_PREFIX = "whsec_"
LEASE = timedelta(minutes=2)
MAX_BACKOFF = timedelta(hours=6)
POLL_SECONDS = 0.5
BATCH = 20


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature (as OpenAI's): `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """Delay after the `attempts`-th failed try: base, 2·base, 4·base, … capped at six hours."""
    return min(timedelta(seconds=base_seconds * 2 ** (attempts - 1)), MAX_BACKOFF)


@dataclass(frozen=True)
class Due:
    """One leased delivery, copied out of its transaction so no session is held across the HTTP call."""

    delivery_id: str
    team_id: str
    attempts: int
    payload: dict[str, Any]
    url: str
    secret: str


def _send(client: httpx.Client, target: netguard.Target, due: Due) -> int:
    """POST to the approved address (Host and TLS SNI keep the name); returns the status, reads no body."""
    body = json.dumps(due.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "host": target.host_header,
        "content-type": "application/json",
        "user-agent": "tunepool-webhooks/1",
        "webhook-id": due.delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(due.secret, due.delivery_id, timestamp, body),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    with client.stream("POST", target.pinned_url, content=body, headers=headers, extensions=extensions) as response:
        return response.status_code


def attempt(client: httpx.Client, settings: Settings, due: Due) -> tuple[bool, int | None, str | None]:
    """Try one delivery: (delivered, status code, short error class). Never raises: every failure is a try."""
    try:
        # Checked again at send time, and the connection goes to the address this check approved.
        target = netguard.check(due.url, settings.webhook_allowed_host_list)
        code = _send(client, target, due)
    except netguard.UnsafeUrl as exc:
        return False, None, exc.reason
    except httpx.TimeoutException:
        return False, None, "timeout"
    except httpx.ConnectError:
        return False, None, "connect_error"
    except httpx.HTTPError:
        return False, None, "network_error"
    except Exception:  # a URL or endpoint that breaks the client must cost its own delivery a try, no more
        log.exception("webhook %s: unexpected send error", due.delivery_id)
        return False, None, "send_error"
    if 200 <= code < 300:
        return True, code, None
    # Redirects are not followed (they could point anywhere): the status alone is logged, never the body.
    return False, code, f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")


def _finish(client: httpx.Client, settings: Settings, due: Due) -> None:
    with log_context(team_id=due.team_id, job_id=due.payload["data"]["id"]):
        ok, code, error = attempt(client, settings, due)
        tried = due.attempts + 1
        retry_at = None
        if not ok and tried < settings.webhook_max_attempts:
            retry_at = datetime.now(UTC) + backoff(tried, settings.webhook_backoff_seconds)
        # Not recorded (a long outage): the lease runs out and the delivery is tried again, as after a crash.
        dbretry.retry_db(
            lambda: _record(due.delivery_id, ok=ok, status_code=code, error=error, retry_at=retry_at),
            what=f"record webhook attempt {due.delivery_id}",
            patience_s=LEASE.total_seconds() / 2,
        )
        outcome = "delivered" if ok else f"attempt {tried} failed ({error}); " + ("retrying" if retry_at else "gave up")
        log.info("webhook %s %s: %s", due.delivery_id, due.payload["type"], outcome)


def _record(delivery_id: str, **outcome: Any) -> None:
    with unit_of_work() as session:
        repo.record_attempt(session, delivery_id, **outcome)


class Sender:
    """Sends deliveries concurrently: at most `webhook_concurrency` in flight, `webhook_team_concurrency` per team,
    so a slow or broken endpoint holds its own slots only and no other team's deliveries wait on it."""

    def __init__(self, client: httpx.Client, settings: Settings) -> None:
        self.client, self.settings = client, settings
        self.pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix="webhook")
        self.in_flight: dict[Future[None], str] = {}  # -> team id

    def round(self) -> int:
        """Lease what free slots allow and start sending it; returns how many were started."""
        self.in_flight = {f: t for f, t in self.in_flight.items() if not f.done()}
        free = self.settings.webhook_concurrency - len(self.in_flight)
        if free <= 0:
            return 0
        per_team = Counter(self.in_flight.values())
        cap = self.settings.webhook_team_concurrency
        started, over = [], []
        with unit_of_work() as session:
            busy = [t for t, n in per_team.items() if n >= cap]
            for d in repo.claim_due(session, min(free, BATCH), LEASE, exclude_teams=busy):
                endpoint = repo.get_endpoint_any_team(session, d.endpoint_id)
                if endpoint is None:
                    continue
                if per_team[d.team_id] >= cap:
                    over.append(d.id)
                    continue
                per_team[d.team_id] += 1
                started.append(Due(d.id, d.team_id, d.attempts, dict(d.payload), endpoint.url, endpoint.secret))
            repo.release(session, over)  # due again at once, for when this team has a free slot
        for due in started:
            self.in_flight[self.pool.submit(_finish, self.client, self.settings, due)] = due.team_id
        return len(started)

    def drain(self) -> None:
        """Wait for every send in flight."""
        wait(list(self.in_flight))
        self.in_flight.clear()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def deliver_due(client: httpx.Client, settings: Settings) -> int:
    """Send every due delivery once and wait for them; returns how many were attempted."""
    sender = Sender(client, settings)
    try:
        started = sender.round()
        sender.drain()
        return started
    finally:
        sender.close()


def run_forever(stop: threading.Event | None = None) -> None:
    """Poll the outbox until `stop` is set; a database blip only delays deliveries."""
    settings = get_settings()
    stop = stop or threading.Event()
    limits = httpx.Limits(max_connections=settings.webhook_concurrency * 2)
    with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False, limits=limits) as client:
        sender = Sender(client, settings)
        try:
            while not stop.is_set():
                try:
                    sent = sender.round()
                except Exception as exc:
                    if dbretry.is_outage(exc):
                        log.warning("database unreachable (%s); webhook deliveries wait", type(exc).__name__)
                    else:
                        log.exception("webhook round failed; retrying")
                    sent = 0
                if not sent:
                    stop.wait(POLL_SECONDS)
        finally:
            sender.close()


def start_thread() -> threading.Thread:
    """The sender as a daemon thread (the dispatcher runs one)."""
    thread = threading.Thread(target=run_forever, name="webhooks", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    configure_logging(get_settings().log_format)
    get_settings().require_servers()
    run_forever()
