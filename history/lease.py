"""One writer per history consumer name: a lease in Redis.

Two ``repsys history`` processes with the same ``history.consumer`` would read one pending
list and store interleaved entries (a second replica of a Deployment, a copied config).
The writer takes ``keys.history_consumer_lease(consumer)`` (``SET NX PX``, its token
naming host and pid) before it reads anything, renews it every third of its TTL, and
gives it back when it stops. A start that finds the name held waits up to
``history.lease_wait_s`` (a crashed predecessor's lease runs out by then) and otherwise
refuses with :class:`ConsumerTaken`; a writer that finds its lease gone (it was paused
past the TTL and another took over) stops without storing its buffers, which stay
pending for the new holder.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable

from redis.exceptions import RedisError

from core import keys
from core.lease import RELEASE_LUA, RENEW_LUA
from core.lifecycle import Stopper
from core.logs import get_logger
from core.redis import RedisCommands
from history.errors import ConsumerTaken

log = get_logger(__name__)
#: How often a waiting start asks again.
_POLL_S = 0.25


class ConsumerLease:
    """The lease on one consumer name, for one process."""

    def __init__(
        self,
        redis: RedisCommands,
        consumer: str,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.consumer = consumer
        self.key = keys.history_consumer_lease(consumer)
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.renewed_at = 0.0
        self._renew = redis.register_script(RENEW_LUA)
        self._release = redis.register_script(RELEASE_LUA)

    def acquire(self, *, wait_s: float, stopper: Stopper | None = None) -> None:
        """Take the lease, waiting up to ``wait_s`` for a holder's to end.

        Raises:
            ConsumerTaken: still held after ``wait_s`` (or the stopper was set).
        """
        deadline = self.clock() + wait_s
        said = False
        while True:
            if self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
                self.renewed_at = self.clock()
                log.info("history_lease_acquired", consumer=self.consumer, token=self.token)
                return
            holder = self.redis.get(self.key)
            if self.clock() >= deadline or (stopper is not None and stopper.stopped):
                raise ConsumerTaken(
                    f"history consumer {self.consumer!r} is held by {holder} "
                    "(one writer per consumer name: give this process its own "
                    "history.consumer and partitions, or stop the other)"
                )
            if not said:
                log.warning(
                    "history_consumer_busy", consumer=self.consumer, holder=holder, wait_s=wait_s
                )
                said = True
            if stopper is not None:
                stopper.wait(_POLL_S)
            else:
                time.sleep(_POLL_S)

    def keep(self) -> bool:
        """Renew when a third of the TTL has passed; False once the lease is someone else's.

        A Redis error is not a loss: the lease is renewed on a later call, and if the TTL
        ran out meanwhile the renewal finds another holder (or none) and says so.
        """
        now = self.clock()
        if now - self.renewed_at < self.ttl_ms / 3000:
            return True
        try:
            held = int(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        except RedisError as exc:
            log.warning("history_lease_renew_failed", consumer=self.consumer, error=str(exc))
            return True
        if held:
            self.renewed_at = now
            return True
        log.error(
            "history_lease_lost",
            consumer=self.consumer,
            token=self.token,
            holder=self.redis.get(self.key),
        )
        return False

    def release(self) -> None:
        """Give the lease back (only if still ours)."""
        try:
            self._release(keys=[self.key], args=[self.token])
        except RedisError as exc:  # it runs out by itself
            log.warning("history_lease_release_failed", consumer=self.consumer, error=str(exc))
