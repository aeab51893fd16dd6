"""Per-API-key rate limits on write requests: a token bucket in Redis, shared by every API process."""

from __future__ import annotations

import logging
import math
import time
from functools import lru_cache

import redis

from core.errors import RateLimited
from core.settings import Settings

log = logging.getLogger(__name__)

# One atomic step per request: refill by elapsed time, take a token if there is one.
# Returns {allowed (0/1), seconds until one token is back}.
_TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring((1 - math.min(tokens, 1)) / rate)}
"""


@lru_cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def check_write(settings: Settings, key_id: str) -> None:
    """Raises RateLimited (429, with a retry delay) when this key's write bucket is empty.

    Fails open: with Redis down the API keeps serving, as it does without the doorbell.
    """
    rate, burst = settings.rate_limit_writes_per_second, settings.rate_limit_write_burst
    if rate <= 0 or not settings.redis_url:
        return
    try:
        client = _client(settings.redis_url)
        allowed, wait = client.eval(_TAKE, 1, f"tunepool:ratelimit:write:{key_id}", rate, burst, time.time())
    except redis.RedisError as exc:
        log.warning("rate limiter unavailable (%s); letting the request through", exc)
        return
    if not int(allowed):
        retry_after = max(1, math.ceil(float(wait)))
        raise RateLimited(
            f"too many write requests for this API key: at most {burst} at once and {rate:g} per second; "
            f"retry in {retry_after} s",
            retry_after=retry_after,
        )
