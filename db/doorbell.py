"""Redis as the dispatcher's doorbell (API: new or resumed job; worker: GPU free).

Not rung by hand: `eventbus.ring_after_commit` asks the after-commit hook to ring it, so a rolled-back
transaction never rings. Postgres stays the record, so a lost ring only costs one poll period.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis

from core.settings import get_settings
from core.tasks import dispatch_doorbell

log = logging.getLogger(__name__)


@lru_cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def ring() -> None:
    """Best effort: a Redis outage must not fail a request whose data is already committed."""
    url = get_settings().redis_url
    if not url:
        return
    try:
        client = _client(url)
        client.lpush(dispatch_doorbell(), "1")
        client.ltrim(dispatch_doorbell(), 0, 0)
    except redis.RedisError as exc:
        log.warning("dispatcher doorbell failed (%s); it will find the job on its next poll", exc)
