"""The stream sink against a real redis-server: acks, order through outages, safe trimming."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from collector.metrics import CollectorMetrics
from collector.sink import StreamSink, encode_fields
from core import keys
from core.config.collector import SinkConfig
from core.metrics import new_registry, sample
from core.model import Quality, Signal
from core.redis import RedisCommands
from repsys.servers import RedisServer, wait_until


def _id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def sig(machine: str, value: int) -> Signal:
    now = time.time()
    return Signal(machine, "part_count", value, source_ts=now, receive_ts=now)


def make_sink(url: str, **cfg: Any) -> tuple[StreamSink, Any, redis.Redis]:
    registry = new_registry()
    client = redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1
    )
    sink = StreamSink(
        client,
        SinkConfig(**cfg),
        CollectorMetrics(registry),
        partitions=4,
        max_len=1000,
        heartbeat_s=0.5,
    )
    return sink, registry, client


def values(client: redis.Redis, machine: str) -> list[Any]:
    stream = keys.signal_stream(keys.partition_of(machine, 4))
    entries: Any = client.xrange(stream)
    return [Signal.from_fields(f).value for _, f in entries if f["m"] == machine]


@pytest.fixture
def sink(redis_url: str) -> Iterator[tuple[StreamSink, Any, redis.Redis]]:
    made = make_sink(redis_url)
    made[0].start()
    yield made
    made[0].stop(5)


def test_acks_run_only_once_their_batch_is_in_redis_and_in_order(
    sink: tuple[StreamSink, Any, redis.Redis], redis_client: redis.Redis
) -> None:
    s, registry, _ = sink
    seen: list[tuple[int, int]] = []
    stream = keys.signal_stream(keys.partition_of("cnc101", 4))

    def ack_for(n: int) -> Callable[[], None]:
        return lambda: seen.append((n, int(redis_client.xlen(stream))))

    for n in range(50):
        s.submit("mqtt", [sig("cnc101", n * 10 + i) for i in range(10)], ack=ack_for(n))
    assert s.flush(10)
    assert [n for n, _ in seen] == list(range(50))
    # When ack n ran, at least its own ten signals (and all before) were in the stream.
    assert all(length >= (n + 1) * 10 for n, length in seen)
    assert values(redis_client, "cnc101") == list(range(500))
    assert (
        sample(
            registry,
            "repsys_collector_signals_written_total",
            {"reader": "mqtt", "machine": "cnc101"},
        )
        == 500
    )
    assert redis_client.hget(keys.machine_last_seen(), "cnc101") is not None
    key = keys.collector_heartbeat("collector")
    wait_until(lambda: redis_client.hget(key, "written") == "500", timeout=5, what="heartbeat")
    assert 0 < redis_client.ttl(key) <= 2  # three heartbeat intervals


def test_redis_away_for_30_s_buffers_in_order_and_counts_overflow(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    s, registry, client = make_sink(server.url, buffer_max=1000, retry_max_s=1.0)
    s.start()
    try:
        s.submit("opcua", [sig("cnc103", n) for n in range(10)])
        assert s.flush(10)
        server.stop()
        # 30 s of a machine producing 50 signals a second while Redis is away: the
        # buffer holds the newest 1000 and drops (and counts) the 500 oldest.
        started = time.monotonic()
        for n in range(10, 1510):
            s.submit("opcua", [sig("cnc103", n)])
            time.sleep(max(0.0, started + (n - 9) * 0.02 - time.monotonic()))  # pacing
        assert time.monotonic() - started >= 30
        assert not s.redis_ok
        assert s.depth == 1000
        assert (
            sample(
                registry,
                "repsys_collector_signals_dropped_total",
                {"reader": "opcua", "machine": "cnc103"},
            )
            == 500
        )
        assert sample(registry, "repsys_collector_redis_errors_total") >= 1
        server.start()
        assert s.flush(30)
        got = values(client, "cnc103")
        # In order, nothing duplicated: the ten written before, the batch the writer held
        # when Redis went away (it starts with 10), then the newest signals up to 1509.
        assert got == sorted(set(got))
        assert len(got) == 10 + 1000 and got[:11] == list(range(11)) and got[-1] == 1509
        held = next(i for i in range(10, len(got)) if got[i + 1] != got[i] + 1)
        assert got[held + 1 :] == list(range(1510 - (len(got) - held - 1), 1510))
        assert s.redis_ok
    finally:
        s.stop(5)
        server.stop()


def test_overflow_drops_unacknowledged_signals_but_keeps_acknowledged_messages(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis")
    s, registry, client = make_sink(server.url, buffer_max=100, retry_max_s=0.5)
    try:  # the writer is not running yet: nothing leaves the buffer
        acked: list[int] = []

        def ack_for(m: int) -> Callable[[], None]:
            return lambda: acked.append(m)

        for n in range(150):
            s.submit("opcua", [sig("cnc101", n)])
            if n % 15 == 0:  # ten MQTT messages of ten signals, interleaved
                m = n // 15
                s.submit("mqtt", [sig("cnc102", m * 10 + i) for i in range(10)], ack=ack_for(m))
        opcua = {"reader": "opcua", "machine": "cnc101"}
        # The hundred MQTT signals fill the buffer: every OPC UA signal had to go.
        assert sample(registry, "repsys_collector_signals_dropped_total", opcua) == 150
        mqtt_labels = {"reader": "mqtt", "machine": "cnc102"}
        assert sample(registry, "repsys_collector_signals_dropped_total", mqtt_labels) == 0
        assert acked == []
        server.start()
        s.start()
        assert s.flush(30)
        assert values(client, "cnc102") == list(range(100))
        assert acked == list(range(10))
        assert values(client, "cnc101") == []
    finally:
        s.stop(5)
        server.stop()


def test_rows_of_a_message_are_kept_written_and_dropped_together(
    redis_url: str, redis_client: redis.Redis
) -> None:
    s, registry, _ = make_sink(redis_url, buffer_max=100)
    labels = {"reader": "mqtt", "machine": "cnc104"}
    # Not started: fifteen snapshot messages of ten values each wait in the buffer.
    for m in range(15):
        xs = [str(m * 10 + i) for i in range(10)]
        group = ["cnc104", "1.5", "2.5", [f"v{i}" for i in range(10)], xs]
        s.submit_rows("mqtt", "cnc104", [group])
    # The buffer counts signals: the five oldest messages went, whole, 50 signals.
    assert s.depth == 100
    assert sample(registry, "repsys_collector_signals_received_total", labels) == 150
    assert sample(registry, "repsys_collector_signals_dropped_total", labels) == 50
    s.start()
    try:
        assert s.flush(10)
        assert values(redis_client, "cnc104") == list(range(50, 150))
        assert sample(registry, "repsys_collector_signals_written_total", labels) == 100
        entries: Any = redis_client.xrange(keys.signal_stream(keys.partition_of("cnc104", 4)))
        assert list(entries[0][1].items()) == [
            ("v", "1"),
            ("m", "cnc104"),
            ("n", "v0"),
            ("x", "50"),
            ("q", "good"),
            ("ts", "1.5"),
            ("rts", "2.5"),
        ]
        assert redis_client.hget(keys.machine_last_seen(), "cnc104") == "2.5"
    finally:
        s.stop(5)


def test_trim_never_removes_entries_pending_for_the_rules_group(
    redis_url: str, redis_client: redis.Redis
) -> None:
    s, registry, _ = make_sink(redis_url, retention_s=0)
    stream = keys.signal_stream(keys.partition_of("cnc102", 4))
    s.start()
    try:
        s.submit("mqtt", [sig("cnc102", n) for n in range(3000)])
        assert s.flush(10)
        redis_client.xgroup_create(stream, keys.RULES_GROUP, id="0")
        read: Any = redis_client.xreadgroup(keys.RULES_GROUP, "w1", {stream: ">"}, count=1500)
        ids = [entry_id for entry_id, _ in read[0][1]]
        redis_client.xack(stream, keys.RULES_GROUP, *ids[:1200])  # 300 stay pending
        oldest_pending = ids[1200]
        s.submit("mqtt", [sig("cnc102", n) for n in range(3000, 6000)])
        assert s.flush(10)
        for _ in range(5):
            s.trim()
        remaining: Any = redis_client.xrange(stream)
        remaining_ids = [entry_id for entry_id, _ in remaining]
        # Everything from the oldest pending entry on is still there (pending and
        # undelivered alike); acknowledged entries before it may be gone.
        later = [i for i in remaining_ids if _id(i) > _id(ids[-1])]
        assert remaining_ids[remaining_ids.index(oldest_pending) :] == [*ids[1200:], *later]
        assert len(later) == 4500  # 1500 never delivered, 3000 new
        assert redis_client.xlen(stream) < 6000  # acknowledged entries were trimmed
        assert sample(registry, "repsys_collector_trimmed_entries_total") > 0
        pending: Any = redis_client.xpending(stream, keys.RULES_GROUP)
        assert pending["pending"] == 300
    finally:
        s.stop(5)


def test_without_the_group_streams_are_capped_near_max_len(
    redis_url: str, redis_client: redis.Redis
) -> None:
    s, registry, _ = make_sink(redis_url)
    s.start()
    try:
        s.submit("mqtt", [sig("cnc101", n) for n in range(5000)])
        assert s.flush(10)
        for _ in range(3):
            s.trim()
        stream = keys.signal_stream(keys.partition_of("cnc101", 4))
        length = redis_client.xlen(stream)
        assert 1000 <= length < 1300  # approximate trimming keeps whole nodes
        assert values(redis_client, "cnc101")[-1] == 4999
        assert (
            sample(
                registry,
                "repsys_collector_stream_entries",
                {"partition": str(keys.partition_of("cnc101", 4))},
            )
            == length
        )
    finally:
        s.stop(5)


def test_wait_replicas_without_replicas_keeps_the_batch_buffered_and_unacked(
    redis_url: str,
) -> None:
    """The session redis-server has no replicas: WAIT 1 answers 0, so the batch is not
    written as far as the sink is concerned. It is written again (at least once) on every
    retry, never acknowledged, and counted as a Redis error; with wait_replicas 0 the
    same message is acknowledged at once."""
    s, registry, client = make_sink(
        redis_url, wait_replicas=1, wait_timeout_ms=20, retry_max_s=0.1, linger_ms=0
    )
    acked: list[str] = []
    s.start()
    try:
        s.submit("mqtt", [sig("cnc-wait-1", n) for n in range(5)], ack=lambda: acked.append("1"))
        wait_until(
            lambda: sample(registry, "repsys_collector_redis_errors_total") >= 3,
            timeout=10,
            what="three unconfirmed attempts",
        )
        assert acked == []
        assert s.depth == 5
        assert not s.redis_ok
        assert s.written_total == 0
        written = {"reader": "mqtt", "machine": "cnc-wait-1"}
        assert sample(registry, "repsys_collector_signals_written_total", written) == 0
        # Each attempt reached the master in full, in order (the replays are harmless).
        got = values(client, "cnc-wait-1")
        assert len(got) >= 15 and got[:10] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
        assert not s.flush(0.2)
    finally:
        s.stop(0.1)
        client.close()

    s, registry, client = make_sink(redis_url, wait_replicas=0, linger_ms=0)
    s.start()
    try:
        s.submit("mqtt", [sig("cnc-wait-0", n) for n in range(5)], ack=lambda: acked.append("0"))
        assert s.flush(10)
        assert acked == ["0"]
        assert s.written_total == 5
        assert sample(registry, "repsys_collector_redis_errors_total") == 0
        assert values(client, "cnc-wait-0") == [0, 1, 2, 3, 4]
    finally:
        s.stop(5)
        client.close()


def test_wait_replicas_confirmed_by_a_real_replica_acks_the_batch(tmp_path: Path) -> None:
    master = RedisServer(tmp_path / "master")
    master.start()
    replica = RedisServer(
        tmp_path / "replica", extra_args=("--replicaof", "127.0.0.1", str(master.port))
    )
    replica.start()
    s, registry, client = make_sink(master.url, wait_replicas=1, wait_timeout_ms=2000)
    try:
        with redis.Redis(port=replica.port, decode_responses=True) as r:
            wait_until(
                lambda: r.info("replication").get("master_link_status") == "up",
                timeout=20,
                what="replica in sync",
            )
        acked: list[int] = []
        s.start()
        s.submit("mqtt", [sig("cnc101", n) for n in range(5)], ack=lambda: acked.append(1))
        assert s.flush(10)
        assert acked == [1]
        assert sample(registry, "repsys_collector_redis_errors_total") == 0
        with redis.Redis(port=replica.port, decode_responses=True) as r:
            assert values(r, "cnc101") == [0, 1, 2, 3, 4]  # on the replica when acked
    finally:
        s.stop(5)
        client.close()
        replica.stop()
        master.stop()


def test_wait_replicas_refuses_a_cluster_client(redis_url: str) -> None:
    class ClusterLike:  # what StreamSink looks at: a client without one connection pool
        pass

    with pytest.raises(ValueError, match="wait_replicas needs a standalone or Sentinel"):
        StreamSink(
            cast("RedisCommands", ClusterLike()),
            SinkConfig(wait_replicas=1),
            CollectorMetrics(new_registry()),
            partitions=4,
            max_len=1000,
        )


def test_heartbeat_and_stop_flush(redis_url: str, redis_client: redis.Redis) -> None:
    s, _, _ = make_sink(redis_url)
    s.start()
    s.submit("mqtt", [sig("cnc101", 1)])
    s.stop(5)  # flushes what is queued before stopping
    assert values(redis_client, "cnc101") == [1]
    wait_until(
        lambda: redis_client.exists(keys.collector_heartbeat("collector")) == 1,
        timeout=5,
        what="heartbeat",
    )


scalars = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.booleans()
    | st.none()
    | st.text(max_size=10)
)


@settings(max_examples=500, deadline=None)
@given(
    value=scalars,
    subject=st.text(max_size=4),
    attrs=st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    ts=st.floats(allow_nan=False, allow_infinity=False),
)
def test_fast_encoding_is_exactly_the_codec(
    value: Any, subject: str, attrs: dict[str, str], ts: float
) -> None:
    signal = Signal("cnc101", "spindle_load", value, Quality.UNCERTAIN, ts, ts + 1, subject, attrs)
    try:
        expected = signal.to_fields()
    except ValueError:
        with pytest.raises(ValueError):
            encode_fields(signal)
        return
    assert encode_fields(signal) == expected


def test_concurrent_producers_keep_each_machines_order_and_exact_counts(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Four threads (paho's, one per broker, and the OPC UA loop in a plant) submit at
    # once into small batches: every machine's signals arrive in its order, and once
    # flushed the received and written counts are exact per machine.
    s, registry, _ = make_sink(redis_url, batch_size=50, linger_ms=0)
    s.start()
    machines = ["cnc101", "cnc102", "cnc103", "cnc104"]
    per_machine = 2000

    def produce(machine: str) -> None:
        for m in range(per_machine // 10):
            xs = [str(m * 10 + i) for i in range(10)]
            s.submit_rows("mqtt", machine, [[machine, "1.5", "2.5", ["n"] * 10, xs]])

    threads = [threading.Thread(target=produce, args=(m,)) for m in machines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert s.flush(60)
        for machine in machines:
            assert values(redis_client, machine) == list(range(per_machine))
            labels = {"reader": "mqtt", "machine": machine}
            received = sample(registry, "repsys_collector_signals_received_total", labels)
            written = sample(registry, "repsys_collector_signals_written_total", labels)
            assert (received, written) == (per_machine, per_machine)
        assert s.written_total == per_machine * len(machines)
        assert s.depth == 0
    finally:
        s.stop(5)


def test_a_waiting_writer_is_woken_by_one_message(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # The writer sleeps with nothing to do, here for up to an hour (its heartbeat and
    # trim too); the hand-off takes no notify unless the writer waits, and then it must.
    registry = new_registry()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    s = StreamSink(
        client,
        SinkConfig(linger_ms=0, trim_interval_s=3600),
        CollectorMetrics(registry),
        partitions=4,
        max_len=1000,
        heartbeat_s=3600,
    )
    s.idle_wait_s = 3600
    s.start()
    try:
        assert s.flush(5)  # the first heartbeat is done
        wait_until(lambda: s._wake_at == 1, timeout=5, what="the writer waiting for work")
        acked: list[int] = []
        row = ["cnc101", "1.5", "2.5", ["n"], ["7"]]
        s.submit_rows("mqtt", "cnc101", [row], ack=lambda: acked.append(1))
        wait_until(lambda: acked == [1], timeout=10, what="the ack")
        assert values(redis_client, "cnc101") == [7]
    finally:
        s.stop(5)


def test_the_signal_counters_are_exposed_as_prometheus_counters(redis_url: str) -> None:
    s, registry, _ = make_sink(redis_url, buffer_max=100)
    for _ in range(12):  # not started: 120 signals into a buffer of 100
        s.submit_rows("mqtt", "cnc104", [["cnc104", "1.5", "2.5", ["n"] * 10, ["1"] * 10]])
    text = generate_latest(registry).decode()
    assert "# TYPE repsys_collector_signals_received_total counter" in text
    assert 'repsys_collector_signals_received_total{machine="cnc104",reader="mqtt"} 120.0' in text
    assert 'repsys_collector_signals_dropped_total{machine="cnc104",reader="mqtt"} 20.0' in text
    assert "# TYPE repsys_collector_signals_written_total counter" in text


@pytest.mark.parametrize("keep_all", [True, False])
def test_grouped_hand_offs_keep_or_drop_the_others_of_an_acknowledged_one(
    redis_url: str, redis_client: redis.Redis, keep_all: bool
) -> None:
    # Not started: twelve hand-offs of ten machines' one-row groups, each acknowledged.
    # keep_all (a broker's ack, as submit): nothing of them may go, the buffer overflows
    # its bound; not (UDP's run-state save): only each hand-off's last, acked, row stays.
    s, registry, _ = make_sink(redis_url, buffer_max=100)
    acked: list[int] = []
    for h in range(12):
        groups = [
            (
                f"cnc10{1 + i % 4}",
                [[f"cnc10{1 + i % 4}", "v", str(h * 10 + i), "good", "1.0", "2.0", "", ""]],
            )
            for i in range(10)
        ]
        s.submit_groups("udp", groups, lambda h=h: acked.append(h), keep_all=keep_all)  # type: ignore[misc]
    dropped = sum(
        sample(registry, "repsys_collector_signals_dropped_total", {"reader": "udp", "machine": m})
        for m in ("cnc101", "cnc102", "cnc103", "cnc104")
    )
    assert (dropped, s.depth) == ((0, 120) if keep_all else (20, 100))
    s.start()
    try:
        assert s.flush(10)
        assert acked == list(range(12))
        written = sorted(
            v for m in ("cnc101", "cnc102", "cnc103", "cnc104") for v in values(redis_client, m)
        )
        lasts = {h * 10 + 9 for h in range(12)}
        assert lasts <= set(written)
        assert len(written) == (120 if keep_all else 100)
    finally:
        s.stop(5)
