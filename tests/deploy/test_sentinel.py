"""Redis Sentinel for real: core.redis's clients survive a master failover, nothing lost.

A local group (master, replica, three sentinels) fails over while a writer keeps adding
signals to the partition streams and a reader consumes them with the rules group:

* a planned failover (SENTINEL FAILOVER, as in an operator's rolling update), with the
  blocking client writing and the asyncio client reading;
* a crash (kill -9 of the master, restarted later as Kubernetes would), with the asyncio
  client writing and the blocking client reading.

A write counts only once every replica has it (WAIT 1: the group has one replica; with
more, WAIT must name them all, see bench/sentinel.py): after a promotion the old master
keeps accepting writes until a sentinel demotes it (up to its 10 s INFO period), and
whatever it took then is discarded when it resyncs. Unconfirmed writes are sent again,
so delivery is at least once and the reader sees every confirmed entry, maybe twice.
The reader re-reads its own pending entries after every error, because an XACK that
reached only the old master is lost with it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from core import keys
from core.config.infra import RedisConfig
from core.model import Signal
from core.redis import connect, connect_sync
from repsys.servers import wait_until
from tests.deploy.topologies import SentinelGroup

PARTITIONS = 4
MACHINES = [f"cnc{100 + i}" for i in range(8)]
STREAMS = [keys.signal_stream(p) for p in range(PARTITIONS)]
#: Errors a client sees while the master changes: connection lost, READONLY from a demoted
#: master, timeouts, "no master" from the sentinels in between.
FAILOVER_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)


def signal(seq: int) -> tuple[str, dict[str, str]]:
    machine = MACHINES[seq % len(MACHINES)]
    stream = keys.signal_stream(keys.partition_of(machine, PARTITIONS))
    sig = Signal(machine=machine, name="part_count", value=seq, receive_ts=time.time())
    return stream, sig.to_fields()


@dataclass
class Tally:
    """What the writer confirmed and the reader saw, shared between threads."""

    confirmed: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    deliveries: int = 0
    write_errors: int = 0
    unconfirmed: int = 0
    read_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_confirmed(self) -> int:
        with self.lock:
            return len(self.confirmed)

    def missing(self) -> set[int]:
        with self.lock:
            return self.confirmed - self.seen


def create_groups(cfg: RedisConfig) -> None:
    client = connect_sync(cfg)
    try:
        for stream in STREAMS:
            client.xgroup_create(stream, keys.RULES_GROUP, id="0", mkstream=True)
    finally:
        client.close()


# --- blocking writer / reader (connect_sync) -----------------------------------------------


def sync_writer(cfg: RedisConfig, tally: Tally, stop: threading.Event) -> None:
    client = connect_sync(cfg)
    seq = 0
    try:
        while not stop.is_set():
            stream, fields = signal(seq)
            try:
                client.xadd(stream, fields)
                if client.wait(1, 500) < 1:
                    tally.unconfirmed += 1
                    continue  # not on a replica yet: send the same signal again
            except FAILOVER_ERRORS:
                tally.write_errors += 1
                stop.wait(0.05)
                continue
            with tally.lock:
                tally.confirmed.add(seq)
            seq += 1
    finally:
        client.close()


def sync_reader(cfg: RedisConfig, tally: Tally, stop: threading.Event) -> None:
    client = connect_sync(cfg)
    start_id = "0"  # own pending entries first: after a failover, acks may be lost
    try:
        while not stop.is_set():
            try:
                batches = client.xreadgroup(
                    keys.RULES_GROUP,
                    "worker-1",
                    dict.fromkeys(STREAMS, start_id),
                    count=500,
                    block=200,
                )
                _consume(tally, batches)
                for stream, entries in batches:
                    if entries:
                        client.xack(stream, keys.RULES_GROUP, *[e[0] for e in entries])
                if start_id == "0" and not any(entries for _, entries in batches):
                    start_id = ">"
            except FAILOVER_ERRORS:
                tally.read_errors += 1
                start_id = "0"
                stop.wait(0.05)
    finally:
        client.close()


def _consume(tally: Tally, batches: Any) -> None:
    with tally.lock:
        for _stream, entries in batches:
            for _id, fields in entries:
                tally.seen.add(int(Signal.from_fields(fields).value))  # type: ignore[arg-type]
                tally.deliveries += 1


# --- asyncio writer / reader (connect) -----------------------------------------------------


async def async_writer(cfg: RedisConfig, tally: Tally, stop: threading.Event) -> None:
    client = connect(cfg)
    seq = 0
    try:
        while not stop.is_set():
            stream, fields = signal(seq)
            try:
                await client.xadd(stream, fields)
                if await client.wait(1, 500) < 1:
                    tally.unconfirmed += 1
                    continue
            except FAILOVER_ERRORS:
                tally.write_errors += 1
                await asyncio.sleep(0.05)
                continue
            with tally.lock:
                tally.confirmed.add(seq)
            seq += 1
    finally:
        await client.aclose()


async def async_reader(cfg: RedisConfig, tally: Tally, stop: threading.Event) -> None:
    client = connect(cfg)
    start_id = "0"
    try:
        while not stop.is_set():
            try:
                batches = await client.xreadgroup(
                    keys.RULES_GROUP,
                    "worker-1",
                    dict.fromkeys(STREAMS, start_id),
                    count=500,
                    block=200,
                )
                _consume(tally, batches)
                for stream, entries in batches:
                    if entries:
                        await client.xack(stream, keys.RULES_GROUP, *[e[0] for e in entries])
                if start_id == "0" and not any(entries for _, entries in batches):
                    start_id = ">"
            except FAILOVER_ERRORS:
                tally.read_errors += 1
                start_id = "0"
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def in_thread(coro_fn: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(coro_fn(*args)), daemon=True)
    thread.start()
    return thread


def plain_thread(fn: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    return thread


def assert_nothing_lost(group: SentinelGroup, tally: Tally, before: int) -> None:
    assert tally.missing() == set(), f"{len(tally.missing())} confirmed signals never read"
    assert tally.count_confirmed() > before
    client = connect_sync(group.config())
    try:
        # Every confirmed signal is in the streams of the master that holds them now (not
        # only read once from a master that has since thrown them away)...
        stored: set[int] = set()
        for stream in STREAMS:
            for _id, fields in client.xrange(stream):
                stored.add(int(Signal.from_fields(fields).value))  # type: ignore[arg-type]
        lost = tally.confirmed - stored
        assert lost == set(), f"{len(lost)} confirmed signals are not in the streams"
        # ...and acknowledged there by the rules group.
        for stream in STREAMS:
            assert client.xpending(stream, keys.RULES_GROUP)["pending"] == 0, stream
    finally:
        client.close()


def run_across(
    group: SentinelGroup,
    tally: Tally,
    threads: list[threading.Thread],
    stop_writer: threading.Event,
    stop_reader: threading.Event,
    event: Any,
) -> int:
    """Let signals flow, run ``event`` (the failover), let them flow on the new master."""
    wait_until(lambda: tally.count_confirmed() >= 300, timeout=30, what="signals before")
    before = tally.count_confirmed()
    event()
    after = tally.count_confirmed()
    wait_until(
        lambda: tally.count_confirmed() >= after + 300, timeout=60, what="signals after failover"
    )
    stop_writer.set()
    threads[0].join(10)
    wait_until(lambda: not tally.missing(), timeout=30, what="reader catching up")
    stop_reader.set()
    threads[1].join(10)
    return before


def test_planned_failover_loses_nothing(sentinel_group: SentinelGroup) -> None:
    cfg = sentinel_group.config()
    create_groups(cfg)
    old_master = sentinel_group.master_port()
    tally, stop_writer, stop_reader = Tally(), threading.Event(), threading.Event()
    threads = [
        plain_thread(sync_writer, cfg, tally, stop_writer),
        in_thread(async_reader, cfg, tally, stop_reader),
    ]
    try:
        before = run_across(
            sentinel_group, tally, threads, stop_writer, stop_reader, sentinel_group.failover
        )
    finally:
        stop_writer.set()
        stop_reader.set()
    assert sentinel_group.master_port() != old_master
    # The clients did meet the failover (errors or unconfirmed writes) and went on.
    assert tally.write_errors + tally.unconfirmed > 0
    assert_nothing_lost(sentinel_group, tally, before)


def test_master_crash_loses_nothing(sentinel_group: SentinelGroup) -> None:
    cfg = sentinel_group.config()
    create_groups(cfg)
    crashed = sentinel_group.server_on(sentinel_group.master_port())

    def crash_and_come_back() -> None:
        crashed.kill()
        wait_until(
            lambda: sentinel_group.master_port() != crashed.port, timeout=30, what="promotion"
        )
        # Kubernetes restarts the pod; the sentinels turn it into the new master's replica,
        # and writes are confirmed again once it is in sync.
        crashed.start()
        sentinel_group.wait_replicated()

    tally, stop_writer, stop_reader = Tally(), threading.Event(), threading.Event()
    threads = [
        in_thread(async_writer, cfg, tally, stop_writer),
        plain_thread(sync_reader, cfg, tally, stop_reader),
    ]
    try:
        before = run_across(
            sentinel_group, tally, threads, stop_writer, stop_reader, crash_and_come_back
        )
    finally:
        stop_writer.set()
        stop_reader.set()
    assert sentinel_group.master_port() != crashed.port
    assert tally.write_errors > 0 and tally.read_errors > 0
    assert_nothing_lost(sentinel_group, tally, before)
