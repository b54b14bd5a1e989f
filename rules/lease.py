"""Partition leases and the worker registry: who evaluates which partition.

Each signal partition is evaluated by one worker at a time, the holder of its lease
(``core.keys.rules_lease(p)``: value = worker id, with a TTL). The holder renews it; only
the holder can renew or release it (Lua below). Every worker heartbeats into the registry
(``core.keys.RULES_WORKERS``, scored by the Redis server's clock so hosts' clocks do not
matter) and aims at ``ceil(partitions / live workers)`` partitions: a worker above target
gives its extras up at a batch boundary, one below takes free ones, preferring partitions
by rendezvous hashing so that assignments move little when workers come and go. A dead
worker's leases expire after ``lease_ttl_s`` and its heartbeat after ``worker_ttl_s``;
the survivors' next round (every ``renew_interval_s``) takes its partitions.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection
from typing import Any

from redis.cluster import RedisCluster

from core import keys
from core.lease import ACQUIRE_LUA, RELEASE_LUA, RENEW_LUA
from core.redis import RedisCommands

#: KEYS[1] = worker registry (sorted set). ARGV[1] = worker id, ARGV[2] = worker TTL in ms.
#: Records the heartbeat at the server's time, forgets workers silent for longer than the
#: TTL, and returns the live workers' ids.
HEARTBEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def preference(worker_id: str, partitions: int) -> list[int]:
    """Partitions in this worker's order of preference (rendezvous hashing)."""

    def score(p: int) -> bytes:
        return hashlib.blake2b(f"{worker_id}/{p}".encode(), digest_size=8).digest()

    return sorted(range(partitions), key=score)


class Leases:
    """One worker's view of the leases and the registry."""

    def __init__(
        self,
        redis: RedisCommands,
        worker_id: str,
        partitions: int,
        *,
        lease_ttl_s: float,
        worker_ttl_s: float,
    ) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.partitions = partitions
        self.lease_ms = int(lease_ttl_s * 1000)
        self.worker_ms = int(worker_ttl_s * 1000)
        self.order = preference(worker_id, partitions)
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._renew = redis.register_script(RENEW_LUA)
        self._release = redis.register_script(RELEASE_LUA)
        self._heartbeat = redis.register_script(HEARTBEAT_LUA)

    def heartbeat(self) -> list[str]:
        """Beat, and return the live workers (this one included)."""
        live = self._heartbeat(keys=[keys.RULES_WORKERS], args=[self.worker_id, self.worker_ms])
        return [str(w) for w in live]

    def rebalance(self, owned: list[int]) -> tuple[list[int], list[int], int]:
        """One round: heartbeat and renew every lease held.

        Returns the partitions whose lease is no longer ours, those to give up to get
        down to this worker's share, and the share (the caller takes free partitions up
        to it, :meth:`free` and :meth:`acquire`).
        """
        live = self.heartbeat()
        lost = self.renew(owned)
        target = self.target(len(live))
        kept = [p for p in owned if p not in lost]
        return lost, self.extras(kept, target), target

    def target(self, live_workers: int) -> int:
        return math.ceil(self.partitions / max(1, live_workers))

    def renew(self, owned: list[int]) -> list[int]:
        """Renew every lease held; the partitions whose lease is no longer ours."""
        if not owned:
            return []
        args = [self.worker_id, self.lease_ms]
        results: list[Any]
        if isinstance(self.redis, RedisCluster):
            # redis-py's cluster client refuses scripts in a pipeline: one call each.
            results = [self._renew(keys=[keys.rules_lease(p)], args=args) for p in owned]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for p in owned:
                self._renew(keys=[keys.rules_lease(p)], args=args, client=pipe)
            results = pipe.execute()
        return [p for p, ok in zip(owned, results, strict=True) if not ok]

    def free(self, held: Collection[int] = ()) -> list[int]:
        """Partitions this worker may take, in its order of preference: those nobody holds,
        and those whose lease is already its own but which it does not hold (``held``): a
        take cut short by a Redis error leaves the lease behind, and waiting for it to
        expire would stop the partition for ``lease_ttl_s``."""
        pipe = self.redis.pipeline(transaction=False)
        for p in self.order:
            pipe.get(keys.rules_lease(p))
        holders = pipe.execute()
        mine = self.worker_id
        return [
            p
            for p, holder in zip(self.order, holders, strict=True)
            if holder is None or (holder == mine and p not in held)
        ]

    def acquire(self, p: int) -> bool:
        """Take ``p``'s lease (or extend it, when it is already this worker's)."""
        return bool(self._acquire(keys=[keys.rules_lease(p)], args=[self.worker_id, self.lease_ms]))

    def release(self, p: int) -> bool:
        return bool(self._release(keys=[keys.rules_lease(p)], args=[self.worker_id]))

    def leave(self) -> None:
        """Leave the registry (a clean stop), so the others rebalance at once."""
        self.redis.zrem(keys.RULES_WORKERS, self.worker_id)

    def extras(self, owned: list[int], target: int) -> list[int]:
        """Which owned partitions to give up to get down to ``target`` (least preferred)."""
        if len(owned) <= target:
            return []
        rank = {p: i for i, p in enumerate(self.order)}
        return sorted(owned, key=lambda p: rank[p])[target:]
