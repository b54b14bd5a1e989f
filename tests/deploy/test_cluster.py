"""Redis Cluster for real: three masters, keys hash-tagged so a partition lives on one node.

A partition's stream, lease and rule state share a slot, so the rules worker's atomic
steps (MULTI or a Lua script over them) work on a Cluster; the signal partitions spread
over every master, so a plant's load does too. core.redis's blocking and asyncio cluster
clients write and read every partition through the rules group.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.crc import key_slot

from core import keys
from core.model import Signal
from core.redis import connect, connect_sync
from tests.deploy.topologies import RedisCluster

PARTITIONS = 16


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_a_partitions_keys_share_one_slot() -> None:
    for p in range(PARTITIONS):
        stream = slot(keys.signal_stream(p))
        assert slot(keys.rules_lease(p)) == stream
        assert slot(keys.rules_state(p)) == stream
    for kind in ("tb", "escalation", "tool_check"):
        assert slot(keys.report_mutex(kind)) == slot(keys.report_fence(kind))


def test_partitions_spread_over_every_master(redis_cluster: RedisCluster) -> None:
    nodes = {redis_cluster.node_of_slot(slot(keys.signal_stream(p))) for p in range(PARTITIONS)}
    assert nodes == {n.port for n in redis_cluster.nodes}


def test_cross_slot_keys_are_refused_so_the_tags_matter(redis_cluster: RedisCluster) -> None:
    client = connect_sync(redis_cluster.config())
    try:
        a, b = keys.signal_stream(0), keys.signal_stream(1)
        assert slot(a) != slot(b)
        # redis-py refuses before sending (the server would answer CROSSSLOT).
        with pytest.raises(redis.RedisClusterException, match="same key slot"):
            client.eval("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2, a, b)
    finally:
        client.close()


def test_a_partition_checkpoint_is_atomic_on_the_cluster(redis_cluster: RedisCluster) -> None:
    """Ack, rule state and lease of one partition in one MULTI: one slot, one node."""
    client = connect_sync(redis_cluster.config())
    p = 5
    stream, state, lease = keys.signal_stream(p), keys.rules_state(p), keys.rules_lease(p)
    try:
        client.delete(stream)
        client.xgroup_create(stream, keys.RULES_GROUP, id="0", mkstream=True)
        entry = client.xadd(stream, Signal("cnc101", "part_count", 7).to_fields())
        client.xreadgroup(keys.RULES_GROUP, "w1", {stream: ">"})
        pipe = client.pipeline(transaction=True)
        pipe.xack(stream, keys.RULES_GROUP, entry)
        pipe.hset(state, "cnc101", '{"last": 7}')
        pipe.set(lease, "w1", px=8000)
        acked, fields, leased = pipe.execute()
        assert (acked, fields) == (1, 1)
        assert leased in (True, "OK")
        assert client.xpending(stream, keys.RULES_GROUP)["pending"] == 0
        assert client.hget(state, "cnc101") == '{"last": 7}'
    finally:
        client.delete(stream, state, lease)
        client.close()


def test_signals_flow_through_every_partition_of_the_cluster(redis_cluster: RedisCluster) -> None:
    cfg = redis_cluster.config()
    machines = [f"cnc{100 + i}" for i in range(40)]
    streams = [keys.signal_stream(p) for p in range(PARTITIONS)]
    writer = connect_sync(cfg)
    try:
        for stream in streams:
            writer.delete(stream)
            writer.xgroup_create(stream, keys.RULES_GROUP, id="0", mkstream=True)
        sent = set()
        for seq in range(2000):
            machine = machines[seq % len(machines)]
            stream = keys.signal_stream(keys.partition_of(machine, PARTITIONS))
            writer.xadd(
                stream, Signal(machine, "part_count", seq, receive_ts=time.time()).to_fields()
            )
            sent.add(seq)
    finally:
        writer.close()

    async def read_all() -> set[int]:
        reader = connect(cfg)
        seen: set[int] = set()
        try:
            # A cluster client reads one partition per call (XREADGROUP keys must share a
            # slot), as a rules worker reads the partitions it leased.
            idle = 0
            while idle < 2:
                got = 0
                for stream in streams:
                    batches = await reader.xreadgroup(
                        keys.RULES_GROUP, "w1", {stream: ">"}, count=500
                    )
                    for _, entries in batches or []:
                        for entry_id, fields in entries:
                            seen.add(int(Signal.from_fields(fields).value))  # type: ignore[arg-type]
                            await reader.xack(stream, keys.RULES_GROUP, entry_id)
                            got += 1
                idle = idle + 1 if got == 0 else 0
        finally:
            await reader.aclose()
        return seen

    assert asyncio.run(read_all()) == sent
    used = {redis_cluster.node_of_slot(slot(s)) for s in streams}
    assert len(used) == len(redis_cluster.nodes)
