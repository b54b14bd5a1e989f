"""One Plex rate limit shared by every sender (and any other client) through Redis.

Plex allows about 200 calls a minute per account, whoever makes them, so the limit
cannot live in one process. It is a GCRA (generic cell rate algorithm): one key holds the
"theoretical arrival time" of the next call; a call may go when that time is at most
``burst - 1`` intervals ahead of now. Redis's own clock (``TIME``) is used, so senders on
machines with skewed clocks still agree. When Plex answers 429, every sender waits out
its ``Retry-After`` through a second key.
"""

from __future__ import annotations

import time

import redis

from core import keys
from core.config.plex import RateLimitConfig
from core.lifecycle import Stopper
from core.logs import get_logger
from core.redis import RedisCommands
from plex.errors import PlexRateLimitedError, PlexUnavailableError
from plex.metrics import PlexMetrics

log = get_logger(__name__)

#: Take a slot, or say how long to wait.
#: KEYS[1] rate-limit key: theoretical arrival time of the next call (ms, Redis clock)
#: KEYS[2] back-off key: until when Plex asked everyone to wait (ms), set after a 429
#: ARGV[1] emission interval in ms (60000 / calls per minute)
#: ARGV[2] burst: calls allowed back to back
#: Returns 0 when the slot is taken, else the milliseconds to wait before asking again.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > now then return hold - now end
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - tolerance > now then return tat - tolerance - now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now + 1000)
return 0
"""

#: Make every caller wait at least ARGV[1] ms from now (never shortens a longer wait).
#: KEYS[1] back-off key; ARGV[1] milliseconds. Returns the wait's end (ms, Redis clock).
BACK_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if hold > current then
  redis.call('SET', KEYS[1], hold, 'PX', tonumber(ARGV[1]) + 1000)
  return hold
end
return current
"""


class RedisRateLimiter:
    """``acquire()`` before each Plex call; ``back_off(s)`` after a 429."""

    def __init__(
        self,
        client: RedisCommands,
        cfg: RateLimitConfig,
        *,
        metrics: PlexMetrics | None = None,
        stopper: Stopper | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.stopper = stopper or Stopper()
        self._acquire = client.register_script(ACQUIRE)
        self._back_off = client.register_script(BACK_OFF)
        self._interval_ms = max(1, round(60_000 / cfg.per_minute))

    def acquire(self) -> None:
        """Block until this call may go.

        Raises:
            PlexRateLimitedError: no slot within ``max_wait_s`` (or the process is stopping).
            PlexUnavailableError: Redis cannot be reached (we do not call Plex unmetered).
        """
        deadline = time.monotonic() + self.cfg.max_wait_s
        waited = 0.0
        while True:
            try:
                wait_ms = int(
                    self._acquire(
                        keys=[keys.PLEX_RATE_LIMIT, keys.PLEX_BACKOFF_UNTIL],
                        args=[self._interval_ms, self.cfg.burst],
                    )
                )
            except redis.RedisError as exc:
                raise PlexUnavailableError(
                    f"rate limit unavailable (Redis): {exc}", reason="ratelimit_unavailable"
                ) from exc
            if wait_ms <= 0:
                if waited and self.metrics is not None:
                    self.metrics.ratelimit_waits.inc()
                    self.metrics.ratelimit_wait_seconds.inc(waited)
                return
            wait_s = wait_ms / 1000
            if time.monotonic() + wait_s > deadline:
                raise PlexRateLimitedError(
                    f"no Plex call slot within {self.cfg.max_wait_s:g} s",
                    retry_after_s=wait_s,
                    reason="rate_limit_wait",
                )
            # Waiting for the slot is the point here; the stopper cuts it short on SIGTERM.
            if self.stopper.wait(wait_s):
                raise PlexRateLimitedError("stopping", reason="rate_limit_wait")
            waited += wait_s

    def back_off(self, seconds: float) -> None:
        """Every caller waits ``seconds`` before its next call (HTTP 429 Retry-After)."""
        ms = max(1, round(seconds * 1000))
        try:
            self._back_off(keys=[keys.PLEX_BACKOFF_UNTIL], args=[ms])
        except redis.RedisError as exc:
            log.warning("plex_backoff_not_shared", error=str(exc))
            return
        log.info("plex_backoff", seconds=seconds)
