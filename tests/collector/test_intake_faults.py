"""Intake under faults: poison messages, decoder bugs, a dead network thread, Redis away.

Each test here failed on the code before issue 14: a poison message killed paho's network
thread for good (and came back after a restart), /healthz said 200 while nothing was
read, the buffer gauge said 0 during a Redis outage, every dead letter wrote a log line,
and OPC UA items the server refused vanished without a word.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
import structlog

from collector.errors import PayloadRejectedError, rejection
from collector.metrics import CollectorMetrics
from collector.mqtt.decode import MessageDecoder
from collector.mqtt.reader import MqttReader
from collector.rows import Row
from collector.service import Collector
from collector.throttle import LogThrottle
from core import keys
from core.config import RepsysConfig
from core.metrics import new_registry, sample
from core.observability import ObservabilityServer
from repsys.servers import RedisServer, wait_until
from tests.collector.conftest import (
    InThread,
    kepware_node,
    opcua_source,
    run_collector,
    run_sim,
    sim_section,
    stream_signals,
)
from tests.collector.test_mqtt import SAMPLE_TOPICS, TEST_TOPICS, mqtt_source, publisher
from tests.collector.test_sink import make_sink, sig

Factory = Callable[..., RepsysConfig]

#: The issue's poison: 1e400 parses as infinity, and int(inf) raised OverflowError.
POISON = b'{"WorkCenter":1e400,"TransDate":"2024-05-01 06:00:00","Cycle_Counter_Shift_SL":1}'


def _good(n: int) -> bytes:
    return (
        b'{"WorkCenter":"cnc103","TransDate":"2024-05-01 06:00:00","Cycle_Counter_Shift_SL":%d}' % n
    )


def _subscribed(registry: Any) -> Callable[[], bool]:
    labels = {"reader": "mqtt", "source": "broker"}
    return lambda: sample(registry, "repsys_collector_source_connected", labels) == 1


def _publish(port: int, *messages: tuple[str, bytes]) -> None:
    pub = publisher(port)
    try:
        for info in [pub.publish(t, p, qos=1) for t, p in messages]:
            info.wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()


#: The TransDate of the messages above, in the plant's zone (America/Chicago, CDT): the
#: broker may hold retained FOCAS messages of the simulated plant, with other times.
TRANS_TS = datetime(2024, 5, 1, 6, tzinfo=ZoneInfo("America/Chicago")).timestamp()


def _counts(client: redis.Redis) -> list[Any]:
    return sorted(
        s.value
        for _, _, s in stream_signals(client, 4)
        if s.name == "part_count" and s.source_ts == TRANS_TS
    )


def test_poison_focas_message_is_dead_lettered_acked_and_intake_goes_on(
    make_config: Factory, mqtt_port: int, redis_client: redis.Redis, started: list[InThread]
) -> None:
    source = mqtt_source(mqtt_port, SAMPLE_TOPICS, client_id=f"poison-{uuid.uuid4().hex[:8]}")
    cfg = make_config(plant={"timezone": "America/Chicago"}, collector={"sources": [source]})
    _, registry, first = run_collector(cfg)
    started.append(first)
    wait_until(_subscribed(registry), timeout=10, what="subscribed")
    _publish(mqtt_port, ("focas/gw1", POISON), ("focas/gw1", _good(1)))
    wait_until(lambda: _counts(redis_client) == [1], timeout=10, what="the message after")
    letters: Any = redis_client.xrange(keys.COLLECTOR_DEAD_LETTERS)
    assert [(f["reason"], f["error"], f["where"]) for _, f in letters] == [
        ("not_finite", "field 'WorkCenter' is not finite", "focas/gw1")
    ]
    # Acknowledged once dead-lettered: a new process on the same persistent session is
    # not handed the poison again (before, it was, and died on it again).
    first.stop()
    _, registry, second = run_collector(cfg)
    started.append(second)
    wait_until(_subscribed(registry), timeout=10, what="subscribed again")
    _publish(mqtt_port, ("focas/gw1", _good(2)))
    wait_until(lambda: _counts(redis_client) == [1, 2], timeout=10, what="the next message")
    assert redis_client.xlen(keys.COLLECTOR_DEAD_LETTERS) == 1


class _BuggyDecoder(MessageDecoder):
    """A decoder with a bug a payload can reach: what no decoder raises on purpose."""

    def decode_rows(self, topic: str, payload: bytes, receive_ts: float) -> tuple[str, list[Row]]:
        if payload == b'{"count": 13}':
            raise ZeroDivisionError("division by zero")
        return super().decode_rows(topic, payload, receive_ts)


def test_an_unexpected_decoder_exception_dead_letters_internal_error_and_intake_goes_on(
    make_config: Factory, mqtt_port: int, redis_client: redis.Redis, started: list[InThread]
) -> None:
    source = mqtt_source(mqtt_port, TEST_TOPICS)
    cfg = make_config(collector={"sources": [source]})
    registry = new_registry()
    metrics = CollectorMetrics(registry)
    collector = Collector(cfg, metrics)
    src = cfg.collector.sources[0]
    decoder = _BuggyDecoder(src, cfg.machines)  # type: ignore[arg-type]
    collector.readers = [MqttReader(src, decoder, collector.sink, metrics)]  # type: ignore[arg-type]
    runner = InThread(lambda stopper: collector.run(stopper, grace_s=5)).start()
    started.append(runner)
    wait_until(_subscribed(registry), timeout=10, what="subscribed")
    bad = [("json/cnc101", b'{"count": 13}')] * 5
    _publish(mqtt_port, *bad, ("json/cnc101", b'{"count": 14}'))

    def counts() -> list[Any]:  # retained plant/... values of other tests may be there
        return [s.value for _, _, s in stream_signals(redis_client, 4) if s.value in (13, 14)]

    wait_until(lambda: counts() == [14], timeout=10, what="the message after")
    wait_until(
        lambda: redis_client.xlen(keys.COLLECTOR_DEAD_LETTERS) == 5, timeout=10, what="letters"
    )
    letters: Any = redis_client.xrange(keys.COLLECTOR_DEAD_LETTERS)
    assert {(f["reason"], f["error"]) for _, f in letters} == {
        ("internal_error", "ZeroDivisionError: division by zero")
    }
    labels = {"reader": "mqtt", "reason": "internal_error"}
    assert sample(registry, "repsys_collector_dead_letters_total", labels) == 5
    assert collector.healthy() == (True, "")


class _Fatal(BaseException):
    """Not an Exception: nothing in a callback catches it, paho's thread ends."""


class _FatalDecoder(MessageDecoder):
    def decode_rows(self, topic: str, payload: bytes, receive_ts: float) -> tuple[str, list[Row]]:
        raise _Fatal("the network thread ends here")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_network_thread_turns_healthz_unhealthy(
    make_config: Factory, mqtt_port: int, started: list[InThread]
) -> None:
    cfg = make_config(collector={"sources": [mqtt_source(mqtt_port, TEST_TOPICS)]})
    registry = new_registry()
    metrics = CollectorMetrics(registry)
    collector = Collector(cfg, metrics)
    src = cfg.collector.sources[0]
    decoder = _FatalDecoder(src, cfg.machines)  # type: ignore[arg-type]
    collector.readers = [MqttReader(src, decoder, collector.sink, metrics)]  # type: ignore[arg-type]
    server = ObservabilityServer(registry, healthy=collector.healthy).start()
    try:
        runner = InThread(lambda stopper: collector.run(stopper, grace_s=5)).start()
        started.append(runner)
        wait_until(_subscribed(registry), timeout=10, what="subscribed")
        health = f"http://127.0.0.1:{server.port}/healthz"
        assert httpx.get(health).status_code == 200
        _publish(mqtt_port, ("json/cnc101", b'{"count": 1}'))
        wait_until(lambda: httpx.get(health).status_code == 503, timeout=10, what="/healthz 503")
        # The source still "looks" connected: only the liveness probe can tell.
        assert _subscribed(registry)()
        assert httpx.get(health).text == "mqtt source broker: the network thread died\n"
    finally:
        server.stop()


def test_buffer_gauge_counts_what_waits_during_a_redis_outage(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    s, registry, _ = make_sink(server.url, retry_max_s=0.5)
    s.start()
    try:
        s.submit("mqtt", [sig("cnc101", 0)])
        assert s.flush(10)
        server.stop()
        s.submit("mqtt", [sig("cnc101", n) for n in range(1, 51)])
        wait_until(lambda: not s.redis_ok, timeout=10, what="the outage noticed")
        wait_until(
            lambda: sample(registry, "repsys_collector_buffer_signals") == 50,
            timeout=10,
            what="the gauge at the 50 waiting signals",
        )
        assert s.depth == 50
    finally:
        s.stop(1)
        server.stop()


def test_dead_letter_logs_are_one_line_per_reason_per_minute(redis_url: str) -> None:
    s, registry, client = make_sink(redis_url)
    now = [1000.0]
    s._dead_letter_log = LogThrottle(60.0, clock=lambda: now[0])
    s.start()
    try:
        with structlog.testing.capture_logs() as logs:
            for reason in ["not_json"] * 1000 + ["too_large"] * 3:
                s.dead_letter("mqtt", source="b", reason=reason, error="e", where="t", payload=b"")
            now[0] += 60.0
            s.dead_letter("mqtt", source="b", reason="not_json", error="e", where="t", payload=b"")
        assert s.flush(10)
    finally:
        s.stop(5)
    lines = [(x["reason"], x["suppressed"]) for x in logs if x["event"] == "collector_dead_letter"]
    assert lines == [("not_json", 0), ("too_large", 0), ("not_json", 999)]
    assert client.xlen(keys.COLLECTOR_DEAD_LETTERS) == 1004  # every one is kept and counted
    labels = {"reader": "mqtt", "reason": "not_json"}
    assert sample(registry, "repsys_collector_dead_letters_total", labels) == 1001


def test_opcua_items_the_server_refuses_are_logged_and_counted_with_their_status(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    nodes = [
        kepware_node("cnc101", "PartCounter", "part_count"),
        {"machine": "cnc102", "signal": "spindle_load", "node_id": "ns=1;s=no.such.node"},
    ]
    cfg = make_config(
        collector={"sources": [opcua_source(opcua_port, nodes)]},
        sim=sim_section(opcua_port, mqtt_port, mqtt={"enabled": False}),
    )
    started.append(run_sim(cfg)[1])
    with structlog.testing.capture_logs() as logs:
        _, registry, coll = run_collector(cfg)
        started.append(coll)
        wait_until(
            lambda: any(s.name == "part_count" for _, _, s in stream_signals(redis_client, 4)),
            timeout=20,
            what="the good node's signal",
        )
    labels = {"reader": "opcua", "source": "plant", "status": "BadNodeIdUnknown"}
    assert sample(registry, "repsys_collector_items_refused_total", labels) == 1
    refused = [x for x in logs if x["event"] == "opcua_item_refused"]
    assert [(x["machine"], x["signal"], x["node"], x["status"]) for x in refused] == [
        ("cnc102", "spindle_load", "ns=1;s=no.such.node", "BadNodeIdUnknown")
    ]


@pytest.mark.parametrize(
    ("clock", "expected"),
    [([0, 1, 59.9, 60, 61, 200], [0, None, None, 2, None, 1])],
)
def test_log_throttle_admits_once_per_period_with_the_held_back_count(
    clock: list[float], expected: list[int | None]
) -> None:
    now = iter(clock)
    throttle = LogThrottle(60.0, clock=lambda: next(now))
    assert [throttle.admit("k") for _ in clock] == expected


def test_rejection_keeps_a_classified_reason() -> None:
    assert rejection(PayloadRejectedError("x", reason="bad_value")) == ("bad_value", "x")
    assert rejection(KeyError("k")) == ("internal_error", "KeyError: 'k'")


def test_not_ready_until_each_source_is_taken_up(
    make_config: Any, mqtt_port: int, started: list[InThread]
) -> None:
    """Readiness means a message sent now finds a subscription (deploy tests rely on it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = probe.getsockname()[1]
    away = make_config({"collector": {"sources": [mqtt_source(nobody, TEST_TOPICS)]}})
    waiting, _, thread = run_collector(away)
    started.append(thread)
    wait_until(lambda: waiting.leases == {"broker": "mine"}, timeout=20, what="lease")
    assert waiting.ready() == (False, "source broker not taken up yet")
    thread.stop()

    cfg = make_config({"collector": {"sources": [mqtt_source(mqtt_port, TEST_TOPICS)]}})
    service, _, thread = run_collector(cfg)
    started.append(thread)
    wait_until(lambda: service.ready()[0], timeout=20, what="ready")
    [reader] = service.readers
    assert isinstance(reader, MqttReader)
    assert reader.connected.is_set()  # subscribed before it said ready
