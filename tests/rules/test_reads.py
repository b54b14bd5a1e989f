"""The two read transports (``rules/reads.py``) answer alike, and one is chosen per topology.

The Cluster's scripted read runs on a plain redis-server too (one node holds every slot),
so both transports are compared here on the same entries and leases; the Cluster itself
is ``tests/deploy/test_pipeline_topologies.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from core import keys
from core.model import Signal
from rules.reads import FencedReads, ScriptedReads, read_transport
from rules.stream import PartitionStream

P = 3


def _fill(redis: Any) -> dict[int, list[str]]:
    """Partition 0: two entries; 1: none (an empty stream); 2: another worker's lease."""
    ids: dict[int, list[str]] = {}
    for p in range(P):
        redis.set(keys.rules_lease(p), "w1" if p < 2 else "w2")
        PartitionStream(redis, "w1").ensure_group(p)
        ids[p] = []
    for n in range(2):
        sig = Signal("m0", "spindle_load", 50.0 + n, source_ts=1.0 + n, receive_ts=1.0 + n)
        ids[0].append(redis.xadd(keys.signal_stream(0), sig.to_fields()))
    return ids


@pytest.mark.parametrize("transport", [FencedReads, ScriptedReads])
def test_a_transport_reads_new_entries_the_last_id_or_a_lost_lease(
    redis_client: Any, transport: type[FencedReads] | type[ScriptedReads]
) -> None:
    ids = _fill(redis_client)
    reads = transport(redis_client, "w1", keys.RULES_GROUP)

    got = reads.send([0, 1, 2], 10).result()

    batch = got[0]
    assert batch is not None
    assert [entry_id for entry_id, _ in batch[0]] == ids[0]
    assert Signal.from_flat(batch[0][1][1]).value == 51.0
    assert (got[1], got[2]) == (([], "0-0"), None)
    again = reads.send([0], 10).result()  # nothing new: the last id, to block on
    assert again == {0: ([], ids[0][-1])}
    reads.close()


@pytest.mark.parametrize("transport", [FencedReads, ScriptedReads])
def test_a_transports_wait_returns_when_an_entry_comes(
    redis_client: Any, transport: type[FencedReads] | type[ScriptedReads]
) -> None:
    _fill(redis_client)
    reads = transport(redis_client, "w1", keys.RULES_GROUP)
    last = redis_client.xrevrange(keys.signal_stream(0), count=1)[0][0]
    sig = Signal("m0", "spindle_load", 60.0, source_ts=3.0, receive_ts=3.0)
    redis_client.xadd(keys.signal_stream(0), sig.to_fields())

    started = time.monotonic()
    reads.wait({0: last, 1: "0-0"}, 3000)
    # An entry after the ids given is there: the wait returns at once, not after 3 s.
    assert time.monotonic() - started < 2.5


def test_the_transport_is_chosen_once_by_topology(redis_client: Any) -> None:
    stream = PartitionStream(redis_client, "w1")
    assert isinstance(stream.reads, FencedReads)
    assert isinstance(read_transport(redis_client, "w1", keys.RULES_GROUP), FencedReads)
    scripted = ScriptedReads(redis_client, "w1", keys.RULES_GROUP)
    assert PartitionStream(redis_client, "w1", reads=scripted).reads is scripted
