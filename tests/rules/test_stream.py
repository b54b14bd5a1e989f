"""The read's lease fence on a real redis-server, at the moment it is most fragile.

On a plain server the read checks the leases (``WATCH`` + ``MGET``) and reads in a
``MULTI`` (``rules/reads.py``). These tests change a lease in the gap between the check
and the read, through the one seam the plain transport has for it (``_holders``, the
check, in a transport given to ``PartitionStream(reads=...)``): Redis must abort the
read, and the check made again must see the lease as it now is. Without the ``WATCH``
the stale worker would take the new holder's entries into its own pending list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core import keys
from core.model import Signal
from repsys.servers import wait_until
from rules.reads import FencedReads
from rules.stream import PartitionStream
from tests.rules.helpers import pending

P = 2


class RacingReads(FencedReads):
    """Runs ``race`` right after the first lease check, before the read."""

    def __init__(self, redis: Any, worker_id: str, race: Callable[[], None]) -> None:
        super().__init__(redis, worker_id, keys.RULES_GROUP)
        self.race = race
        self.checks = 0

    def _holders(self, pipe: Any, leases: list[str]) -> list[str | None]:
        holders = super()._holders(pipe, leases)
        self.checks += 1
        if self.checks == 1:
            self.race()
        return holders


class RacingStream(PartitionStream):
    """A partition stream reading through :class:`RacingReads` (the constructor's seam)."""

    def __init__(self, redis: Any, worker_id: str, race: Callable[[], None]) -> None:
        self.racing = RacingReads(redis, worker_id, race)
        super().__init__(redis, worker_id, reads=self.racing)

    @property
    def checks(self) -> int:
        return self.racing.checks


def _setup(redis: Any) -> None:
    for p in range(P):
        redis.set(keys.rules_lease(p), "w1")
        stream = RacingStream(redis, "w1", lambda: None)
        stream.ensure_group(p)
        sig = Signal(f"m{p}", "spindle_load", 50.0 + p, source_ts=1.0, receive_ts=1.0)
        redis.xadd(keys.signal_stream(p), sig.to_fields())


def test_a_lease_taken_between_the_check_and_the_read_delivers_nothing(redis_client) -> None:
    _setup(redis_client)
    stream = RacingStream(redis_client, "w1", lambda: redis_client.set(keys.rules_lease(1), "w2"))

    got = stream.read([0, 1], 100)

    assert stream.checks == 2  # the first read was aborted and the check made again
    assert got[1] is None  # lost: not read
    batch = got[0]
    assert batch is not None
    assert [Signal.from_flat(fields).machine for _, fields in batch[0]] == ["m0"]
    assert pending(redis_client, 1) == 1  # partition 0's entry, delivered once
    assert pending(redis_client, P) == 1  # nothing of partition 1 went to the stale worker


def test_a_lease_expiring_between_the_check_and_the_read_delivers_nothing(redis_client) -> None:
    _setup(redis_client)
    lease = keys.rules_lease(0)

    def expire() -> None:
        redis_client.pexpire(lease, 1)
        wait_until(lambda: not redis_client.exists(lease), timeout=5, what="lease expiry")

    stream = RacingStream(redis_client, "w1", expire)
    got = stream.read([0, 1], 100)

    assert stream.checks == 2
    assert got[0] is None
    assert got[1] is not None and len(got[1][0]) == 1
    assert pending(redis_client, P) == 1


def test_its_own_renewal_in_the_gap_only_costs_a_second_check(redis_client) -> None:
    _setup(redis_client)
    stream = RacingStream(
        redis_client, "w1", lambda: redis_client.pexpire(keys.rules_lease(0), 8000)
    )

    got = stream.read([0, 1], 100)

    assert stream.checks == 2
    assert all(batch is not None and len(batch[0]) == 1 for batch in got.values())
    assert pending(redis_client, P) == 2
    again = stream.read([0, 1], 100)
    # Nothing new: no entries, and the stream's last id to block on.
    assert again == {p: ([], last_id(redis_client, p)) for p in (0, 1)}


def last_id(redis: Any, p: int) -> str:
    return str(redis.xrevrange(keys.signal_stream(p), count=1)[0][0])


def test_a_read_whose_connection_was_dropped_raises_instead_of_waiting(redis_client) -> None:
    _setup(redis_client)
    stream = PartitionStream(redis_client, "w1")
    sent = stream.send_read([0, 1], 100)
    stream.abandon()  # as a worker starting over after a Redis error

    with pytest.raises(RedisConnectionError, match="dropped before its reply"):
        sent.result()
    # What Redis delivered stays pending, for the next holder to claim.
    wait_until(lambda: pending(redis_client, P) == 2, timeout=5, what="the read delivered")
    assert stream.read([0, 1], 100) == {p: ([], last_id(redis_client, p)) for p in (0, 1)}
