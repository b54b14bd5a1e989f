"""Key names: one prefix, stable partitions, hash tags that keep a partition on one slot."""

from __future__ import annotations

from collections import Counter

from redis.crc import key_slot

from core import keys


def test_partition_mapping_is_pinned() -> None:
    # Changing the mapping would move machines between partitions on upgrade and break
    # per-machine order across the switch: these values must never change.
    assert [keys.partition_of(m, 8) for m in ("cnc101", "cnc102", "cnc103", "cnc120")] == [
        0,
        2,
        4,
        4,
    ]


def test_partitions_are_spread() -> None:
    counts = Counter(keys.partition_of(f"cnc{i}", 8) for i in range(400))
    assert sorted(counts) == list(range(8))
    assert min(counts.values()) > 20


def test_every_key_has_the_prefix() -> None:
    names = [
        keys.signal_stream(3),
        keys.rules_lease(3),
        keys.rules_state(3),
        keys.report_mutex("tb"),
        keys.report_fence("tb"),
        keys.REPORT_QUEUE,
        keys.COLLECTOR_DEAD_LETTERS,
        keys.RULES_DEAD_LETTERS,
        keys.PLEX_RATE_LIMIT,
        keys.SCHEDULER_LEASE,
        keys.machine_live("cnc1"),
        keys.login_attempts("bob"),
    ]
    assert all(n.startswith("repsys:") for n in names)


def test_partition_keys_share_a_cluster_slot() -> None:
    for p in range(16):
        slots = {
            key_slot(k.encode())
            for k in (keys.signal_stream(p), keys.rules_lease(p), keys.rules_state(p))
        }
        assert len(slots) == 1
    assert key_slot(keys.report_mutex("tb").encode()) == key_slot(keys.report_fence("tb").encode())
    # Different partitions may land on different nodes.
    assert len({key_slot(keys.signal_stream(p).encode()) for p in range(16)}) == 16
