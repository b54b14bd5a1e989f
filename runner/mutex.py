"""The report mutex: a Redis lease with N permits per kind and a fencing number.

The design's TB mutex was "down" before the ETL scripts and "up" after. A crashed holder
must not keep it forever, so it is a lease: a random token with an expiry, renewed while
steps run (:class:`LeaseKeeper`), released only by its holder. Each acquisition INCRs the
kind's fencing counter; the number goes to every step, and every load checks it against
the database (``runner.fence``), so a holder that lost its lease while paused cannot write
over the run that replaced it. All three operations are Lua scripts, atomic on one node
(the lease hash, the fence counter and the wake-up list share the ``{kind}`` hash tag).

Expiry uses the Redis server's clock (``TIME``), never the runners' clocks.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from core import keys
from core.lifecycle import Stopper
from core.logs import get_logger
from core.redis import RedisCommands
from runner.errors import LeaseLost
from runner.metrics import RunnerMetrics

log = get_logger(__name__)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS[1] lease hash (token -> expiry ms), KEYS[2] fence counter.
#: ARGV[1] token, ARGV[2] TTL ms, ARGV[3] permits, ARGV[4] the floor: the highest fence
#: the database has seen (0: unknown). A counter at or below it (Redis restarted without
#: persistence, a failover before replication) is re-seeded above it.
#: Returns {fencing number, 1 when re-seeded else 0}, or {0, 0} when every permit is
#: held by someone else.
ACQUIRE = (
    _NOW
    + """
local holders = redis.call('HGETALL', KEYS[1])
local live = 0
for i = 1, #holders, 2 do
  if tonumber(holders[i + 1]) <= now then
    redis.call('HDEL', KEYS[1], holders[i])
  elseif holders[i] ~= ARGV[1] then
    live = live + 1
  end
end
if live >= tonumber(ARGV[3]) then return {0, 0} end
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local fence = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[4])
if fence <= floor then
  fence = floor + 1
  redis.call('SET', KEYS[2], fence)
  return {fence, 1}
end
return {fence, 0}
"""
)

#: KEYS[1] lease hash. ARGV[1] token, ARGV[2] TTL ms.
#: Returns 1 when renewed, 0 when the lease had expired or was never ours.
RENEW = (
    _NOW
    + """
local expiry = redis.call('HGET', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""
)

#: KEYS[1] lease hash, KEYS[2] wake-up list. ARGV[1] token.
#: Returns 1 when released, 0 when it was not held. A release wakes one waiter.
RELEASE = """
local held = redis.call('HDEL', KEYS[1], ARGV[1])
if held == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('PEXPIRE', KEYS[2], 5000)
end
return held
"""


@dataclass
class Lease:
    """One held permit of a kind's mutex."""

    mutex: Mutex
    token: str
    fence: int
    acquired_at: float = field(default_factory=time.monotonic)

    @property
    def kind(self) -> str:
        return self.mutex.kind

    def renew(self) -> bool:
        """Extend the lease by its TTL; ``False`` when it is no longer ours."""
        return self.mutex.renew(self.token)

    def release(self) -> bool:
        """Give the permit back; ``False`` when it had already expired."""
        return self.mutex.release(self.token)


class Mutex:
    """A kind's mutex with ``permits`` concurrent holders (TB: 1)."""

    def __init__(
        self,
        client: RedisCommands,
        kind: str,
        *,
        permits: int = 1,
        ttl_s: float = 30.0,
        metrics: RunnerMetrics | None = None,
        floor: Callable[[], int] | None = None,
    ) -> None:
        self.client = client
        self.kind = kind
        #: The highest fence the database knows for the kind (runner.fence.highest_fence),
        #: read at each acquisition: Redis may have forgotten the counter.
        self.floor = floor
        self.permits = permits
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.metrics = metrics
        self._lease_key = keys.report_mutex(kind)
        self._fence_key = keys.report_fence(kind)
        self._wake_key = keys.report_mutex_wake(kind)
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    def try_acquire(self) -> Lease | None:
        """Take a permit now, or ``None`` when all are held."""
        token = secrets.token_hex(16)
        floor = self.floor() if self.floor is not None else 0
        fence, reseeded = (
            int(x)
            for x in self._acquire(
                keys=[self._lease_key, self._fence_key],
                args=[token, self.ttl_ms, self.permits, floor],
            )
        )
        if fence == 0:
            return None
        if reseeded:
            # Redis forgot the counter (restarted without persistence, failed over before
            # replicating): without this the next runs would be fenced off by the database.
            log.warning("mutex_fence_reseeded", kind=self.kind, fence=fence, database=floor)
        if self.metrics is not None:
            self.metrics.mutex_held_since.labels(kind=self.kind).set(time.time())
        return Lease(self, token, fence)

    def acquire(
        self,
        stopper: Stopper,
        *,
        poll_s: float = 1.0,
        on_wait: Callable[[], None] | None = None,
    ) -> Lease | None:
        """Wait for a permit; ``None`` if ``stopper`` is set first.

        A waiter blocks on the wake-up list (a release pushes to it), so the hand-over
        does not wait for a poll; ``poll_s`` bounds the wait when a holder dies instead
        of releasing. ``on_wait`` runs between attempts (the runner keeps its queue entry
        alive with it).
        """
        started = time.monotonic()
        while not stopper.stopped:
            lease = self.try_acquire()
            if lease is not None:
                waited = time.monotonic() - started
                if self.metrics is not None:
                    self.metrics.mutex_wait.labels(kind=self.kind).observe(waited)
                log.info(
                    "mutex_acquired", kind=self.kind, fence=lease.fence, waited_s=round(waited, 3)
                )
                return lease
            if on_wait is not None:
                on_wait()
            with contextlib.suppress(redis.TimeoutError):
                self.client.blpop([self._wake_key], timeout=poll_s)
        return None

    def renew(self, token: str) -> bool:
        return bool(self._renew(keys=[self._lease_key], args=[token, self.ttl_ms]))

    def release(self, token: str) -> bool:
        try:
            released = bool(self._release(keys=[self._lease_key, self._wake_key], args=[token]))
        finally:
            # Held or lost, this runner no longer counts on it.
            if self.metrics is not None:
                self.metrics.mutex_held_since.labels(kind=self.kind).set(0)
        log.info("mutex_released", kind=self.kind, held=released)
        return released


class LeaseKeeper:
    """Renews a lease in a thread while a pipeline runs; notices when it is lost.

    A renewal that Redis answers "not yours" marks the lease lost at once. A renewal that
    cannot reach Redis is retried at the next tick; once a whole TTL has passed without a
    confirmed renewal the lease must be presumed expired, and is marked lost too. The
    pipeline calls :meth:`check` between steps and stops with :class:`LeaseLost`.
    """

    def __init__(
        self,
        lease: Lease,
        *,
        period_s: float,
        on_tick: Callable[[], None] | None = None,
        metrics: RunnerMetrics | None = None,
    ) -> None:
        self.lease = lease
        self.period_s = period_s
        self.on_tick = on_tick
        self.metrics = metrics
        self.lost = threading.Event()
        self.why = ""
        self._stop = threading.Event()
        self._last_ok = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.period_s + 5)

    def check(self) -> None:
        """Raise :class:`LeaseLost` when the lease is gone."""
        if self.lost.is_set():
            raise LeaseLost(f"the {self.lease.kind} mutex lease was lost: {self.why}")

    def _mark_lost(self, why: str) -> None:
        self.why = why
        self.lost.set()
        if self.metrics is not None:
            self.metrics.lease_lost.labels(kind=self.lease.kind).inc()
        log.warning("mutex_lease_lost", kind=self.lease.kind, fence=self.lease.fence, why=why)

    def _loop(self) -> None:
        ttl_s = self.lease.mutex.ttl_ms / 1000
        while not self._stop.wait(self.period_s):
            try:
                renewed = self.lease.renew()
            except redis.RedisError as exc:
                if time.monotonic() - self._last_ok >= ttl_s:
                    self._mark_lost(f"no renewal for {ttl_s:g} s: {exc}")
                    return
                log.warning("mutex_renew_failed", kind=self.lease.kind, error=str(exc))
                continue
            if not renewed:
                self._mark_lost("expired or taken by another runner")
                return
            self._last_ok = time.monotonic()
            if self.on_tick is not None:
                try:
                    self.on_tick()
                except redis.RedisError as exc:
                    log.warning("queue_touch_failed", error=str(exc))
