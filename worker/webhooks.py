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
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

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


def _send(client: httpx.Client, url: str, secret: str, delivery_id: str, payload: dict[str, Any]) -> httpx.Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "tunepool-webhooks/1",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, delivery_id, timestamp, body),
    }
    return client.post(url, content=body, headers=headers)


def deliver_due(client: httpx.Client, settings: Settings) -> int:
    """Send every due delivery once; returns how many were attempted."""
    with unit_of_work() as session:
        due = repo.claim_due(session, BATCH, LEASE)
        work = []
        for d in due:
            endpoint = repo.get_endpoint_any_team(session, d.endpoint_id)
            if endpoint is not None:
                work.append((d.id, d.team_id, d.attempts, d.payload, endpoint.url, endpoint.secret))
    for delivery_id, team_id, attempts, payload, url, secret in work:
        with log_context(team_id=team_id, job_id=payload["data"]["id"]):
            ok, code, error = False, None, None
            try:
                response = _send(client, url, secret, delivery_id, payload)
                code, ok = response.status_code, response.is_success
                error = None if ok else f"HTTP {code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            tried = attempts + 1
            retry_at = None
            if not ok and tried < settings.webhook_max_attempts:
                retry_at = datetime.now(UTC) + backoff(tried, settings.webhook_backoff_seconds)
            with unit_of_work() as session:
                repo.record_attempt(session, delivery_id, ok=ok, status_code=code, error=error, retry_at=retry_at)
            log.info(
                "webhook %s %s to %s: %s",
                delivery_id,
                payload["type"],
                url,
                "delivered" if ok else f"attempt {tried} failed ({error}); " + ("retrying" if retry_at else "gave up"),
            )
    return len(work)


def run_forever(stop: threading.Event | None = None) -> None:
    """Poll the outbox until `stop` is set; a database blip only delays deliveries."""
    settings = get_settings()
    stop = stop or threading.Event()
    with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as client:
        while not stop.is_set():
            try:
                sent = deliver_due(client, settings)
            except Exception as exc:
                if dbretry.is_outage(exc):
                    log.warning("database unreachable (%s); webhook deliveries wait", type(exc).__name__)
                else:
                    log.exception("webhook round failed; retrying")
                sent = 0
            if not sent:
                stop.wait(POLL_SECONDS)


def start_thread() -> threading.Thread:
    """The sender as a daemon thread (the dispatcher runs one)."""
    thread = threading.Thread(target=run_forever, name="webhooks", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    configure_logging(get_settings().log_format)
    get_settings().require_servers()
    run_forever()
