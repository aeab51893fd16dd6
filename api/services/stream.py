"""Live job events for SSE watchers: one Redis subscription per API process, fanned out per job.

Postgres is the record: a Redis message only wakes the job's feed, which reads the new events from Postgres
once (not once per watcher) into a small shared buffer. A watcher replays from Postgres on connect, then reads
the buffer; it deduplicates by seq, so the replay → live handover has no gaps and no duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import redis.exceptions

from api.presenters import event_object
from core.enums import JobStatus
from core.errors import InvalidRequest, RateLimited
from core.settings import get_settings
from db import eventbus
from db.repositories import events, jobs
from db.session import session_factory

log = logging.getLogger(__name__)
PING_SECONDS = 15.0  # how long the Redis reader waits per message read (the watchers ping on their own period)
POLL_SECONDS = 5.0  # feeds re-read Postgres this often even without Redis messages (a lost publish)
MAX_CURSOR = 2**63 - 1  # event seqs are BIGINT
BUFFER_EVENTS = 512  # per job; a watcher that falls further behind re-reads Postgres
REPLAY_BATCH = 500


REVOKED = {
    "error": {"message": "the API key or session was revoked", "type": "authentication_error", "param": None,
              "code": "invalid_api_key"}
}  # fmt: skip


@dataclass(frozen=True)
class StreamEvent:
    seq: int
    type: str
    status: str | None  # the new status, for `status` events
    frame: bytes  # the SSE frame, formatted once for all watchers


def _frame(event_id: int | None, name: str, data: str) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {data}\n\n".encode()


def _read_events(job_id: str, after: int, limit: int = REPLAY_BATCH) -> list[StreamEvent]:
    """Committed events of a job with seq > after, oldest first (blocking; run in a thread)."""
    with session_factory()() as session:
        rows = events.list_events(session, job_id, after_seq=after, limit=limit, newest_first=False)
        out = []
        for row in rows:
            status = (row.data or {}).get("status") if row.type == "status" else None
            body = event_object(row).model_dump_json()
            out.append(StreamEvent(row.job_seq, row.type, status, _frame(row.job_seq, row.type, body)))
        return out


def _job_state(job_id: str) -> tuple[str, int]:
    """The job's status and its newest event seq, in one snapshot (two columns, never the whole job row)."""
    with session_factory()() as session:
        status = jobs.job_status(session, job_id)
        return (status or JobStatus.CANCELLED.value), events.last_seq(session, job_id)


def parse_cursor(value: str | None, param: str) -> int:
    """A `Last-Event-ID` or `?after=` value as a seq: ASCII digits (optionally `ftevent-`), within BIGINT."""
    if value is None or not value.strip():
        return 0
    digits = value.strip().removeprefix("ftevent-")
    if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_CURSOR:
        raise InvalidRequest(f"{param}: not an event id: {value[:40]!r}", param=param)
    return int(digits)


def ping_seconds() -> float:
    return get_settings().stream_ping_seconds


@dataclass
class Feed:
    """One watched job: a buffer holding every event with seq in (floor, last_seq], shared by its watchers."""

    job_id: str
    last_seq: int
    floor: int
    watchers: int = 0
    buffer: deque[StreamEvent] = field(default_factory=lambda: deque(maxlen=BUFFER_EVENTS))
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Refresh from Postgres whenever woken (a Redis message) or every POLL_SECONDS.

        Watchers are woken on new events and on every poll: that tick is their clock for pings, so a waiting
        watcher holds no timer of its own (a hundred of them re-arming one per event cost the API real CPU).
        """
        while True:
            polled = False
            try:
                # A quarter of the ping period: the watchers ping (and re-check their key) on these ticks.
                async with asyncio.timeout(min(POLL_SECONDS, ping_seconds() / 4)):
                    await self.wake.wait()
            except TimeoutError:
                polled = True
            self.wake.clear()
            try:
                new = await asyncio.to_thread(_read_events, self.job_id, self.last_seq)
            except Exception as exc:  # a database blip: the next wake or poll retries
                log.warning("stream feed %s: %s", self.job_id, exc)
                new = []
            for item in new:
                if len(self.buffer) == self.buffer.maxlen:
                    self.floor = self.buffer[0].seq
                self.buffer.append(item)
            if new:
                self.last_seq = new[-1].seq
            if len(new) == REPLAY_BATCH:
                self.wake.set()  # more are waiting
            if new or polled:
                self.changed.set()
                self.changed = asyncio.Event()


class EventHub:
    """Per-process fan-out: one Redis subscription, one feed per watched job."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.feeds: dict[str, Feed] = {}
        self._subscribed = asyncio.Event()
        self._reader = self.loop.create_task(self._read_redis())

    @property
    def watchers(self) -> int:
        return sum(f.watchers for f in self.feeds.values())

    async def _read_redis(self) -> None:
        url = get_settings().redis_url
        if not url:  # no bus configured: feeds still poll Postgres
            self._subscribed.set()
            return
        while True:
            client = None
            try:
                client = aioredis.Redis.from_url(url)
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(eventbus.channel())
                    await pubsub.get_message(timeout=5)  # the subscribe confirmation
                    self._subscribed.set()
                    for feed in self.feeds.values():  # events published while we were away
                        feed.wake.set()
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=PING_SECONDS)
                        if message and message["type"] == "message":
                            self._notify(message["data"])
            except asyncio.CancelledError:
                raise
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("event bus unavailable (%s); feeds poll Postgres until it is back", exc)
                self._subscribed.set()  # don't hold watchers up: polling still serves them
                await asyncio.sleep(1.0)
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.aclose()

    def _notify(self, raw: bytes) -> None:
        decoded = eventbus.decode(raw)
        if decoded is None:
            return
        feed = self.feeds.get(decoded[0])
        if feed is not None and decoded[1] > feed.last_seq:
            feed.wake.set()

    async def join(self, job_id: str) -> Feed:
        """Start watching a job; the feed holds everything committed after this call returns."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)
        feed = self.feeds.get(job_id)
        if feed is None:
            _, newest = await asyncio.to_thread(_job_state, job_id)
            feed = self.feeds.get(job_id)  # another watcher may have created it meanwhile
            if feed is None:
                feed = Feed(job_id, last_seq=newest, floor=newest)
                feed.task = self.loop.create_task(feed.run())
                self.feeds[job_id] = feed
                feed.wake.set()  # anything committed between the snapshot and now
        feed.watchers += 1
        return feed

    def leave(self, feed: Feed) -> None:
        feed.watchers -= 1
        if feed.watchers == 0 and self.feeds.get(feed.job_id) is feed:
            del self.feeds[feed.job_id]
            if feed.task is not None:
                feed.task.cancel()


_hub: EventHub | None = None


def hub() -> EventHub:
    """This process's hub (one per event loop: the test client runs its own)."""
    global _hub
    if _hub is None or _hub.loop is not asyncio.get_running_loop():
        _hub = EventHub()
    return _hub


def watcher_count() -> int:
    return _hub.watchers if _hub is not None else 0


_open_streams: Counter[str] = Counter()  # "key:<hash>" / "team:<id>" -> open streams in this process


def open_slot(key_id: str, team_id: str) -> tuple[str, str]:
    """Count a new stream against its key and team; RateLimited (429) past max_streams_per_key/_team."""
    settings = get_settings()
    slot = (f"key:{key_id}", f"team:{team_id}")
    for name, cap in zip(slot, (settings.max_streams_per_key, settings.max_streams_per_team), strict=True):
        if _open_streams[name] >= cap:
            kind = name.split(":")[0]
            raise RateLimited(
                f"too many open event streams for this {'API key' if kind == 'key' else 'team'}: at most {cap}; "
                "close one (or poll GET .../events)",
                retry_after=5,
            )
    _open_streams.update(slot)
    return slot


async def in_slot(frames: AsyncIterator[bytes], slot: tuple[str, str]) -> AsyncIterator[bytes]:
    """The frames, giving the slot back when the stream ends or the client goes."""
    try:
        async for chunk in frames:
            yield chunk
    finally:
        _open_streams.subtract(slot)
        for name in slot:
            if _open_streams[name] <= 0:
                del _open_streams[name]


async def stream_job(job_id: str, after: int, still_allowed: Callable[[], bool] | None = None) -> AsyncIterator[bytes]:
    """SSE frames for one watcher: replay after `after`, then live, then `end` once the job is terminal.

    Each wake yields everything pending as one chunk: one send through the ASGI stack and one socket write per
    watcher, however many events arrived. A hundred watchers of a job pay this per event, so it is kept lean.
    `still_allowed` (blocking) is asked at every ping: once the key or session is revoked the stream ends.
    """
    ping = ping_seconds()
    the_hub = hub()
    loop = the_hub.loop
    feed = await the_hub.join(job_id)
    try:
        sent = after
        async for chunk, seq, done in _replay(job_id, sent):
            sent = seq
            yield chunk
            if done:
                return
        wrote = loop.time()  # when this watcher last got bytes: a ping follows `ping` seconds of silence
        while True:
            changed = feed.changed
            if sent < feed.floor:  # fell out of the buffer: catch up from Postgres
                async for chunk, seq, done in _replay(job_id, sent):
                    sent = seq
                    yield chunk
                    if done:
                        return
                wrote = loop.time()
                continue
            pending = _newer(feed.buffer, sent)
            if pending:
                terminal = next((i for i, item in enumerate(pending) if _is_terminal(item)), None)
                if terminal is None:
                    sent = pending[-1].seq
                    yield b"".join(item.frame for item in pending)
                    wrote = loop.time()
                    continue
                # Events of the status's transaction may follow it: send them from Postgres, then `end`.
                sent = pending[terminal].seq
                yield b"".join(item.frame for item in pending[: terminal + 1])
                async for chunk, _, _ in _replay(job_id, sent):
                    yield chunk
                return
            if loop.time() - wrote >= ping:
                if still_allowed is not None and not await asyncio.to_thread(still_allowed):
                    yield _frame(None, "error", json.dumps(REVOKED))
                    return
                yield b": ping\n\n"
                wrote = loop.time()
                status, _ = await asyncio.to_thread(_job_state, job_id)
                if JobStatus(status).is_terminal:  # finished without a status event (older rows)
                    async for chunk, _, _ in _replay(job_id, sent):
                        yield chunk
                    return
            await changed.wait()  # new events, or the feed's poll tick (no timer per watcher)
    finally:
        the_hub.leave(feed)


def _newer(buffer: deque[StreamEvent], after: int) -> list[StreamEvent]:
    """Buffered events with seq > after, oldest first; walks back from the newest, so a watcher that is up to
    date pays for the new events only, not for the whole buffer."""
    newer = []
    for item in reversed(buffer):
        if item.seq <= after:
            break
        newer.append(item)
    newer.reverse()
    return newer


def _is_terminal(item: StreamEvent) -> bool:
    return item.status is not None and JobStatus(item.status).is_terminal


async def _replay(job_id: str, after: int) -> AsyncIterator[tuple[bytes, int, bool]]:
    """Stored events after `after`, a batch per chunk, then `end` (done=True) when the job is terminal."""
    sent = after
    while True:
        status, _ = await asyncio.to_thread(_job_state, job_id)
        batch = await asyncio.to_thread(_read_events, job_id, sent)
        if batch:
            sent = batch[-1].seq
            yield b"".join(item.frame for item in batch), sent, False
        if len(batch) < REPLAY_BATCH:
            break
    if JobStatus(status).is_terminal:
        # The status was read before the events: every event of the finished job is already sent.
        yield _frame(None, "end", json.dumps({"status": status})), sent, True
