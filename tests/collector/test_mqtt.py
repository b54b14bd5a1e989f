"""MQTT → streams through a real mosquitto: formats, dead letters, broker restart, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import redis
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core import keys
from core.config import RepsysConfig
from core.metrics import sample
from repsys.servers import MosquittoServer, RedisServer, free_port, wait_until
from tests.collector.conftest import InThread, run_collector, run_sim, sim_section, stream_signals
from tests.conftest import REPO, TEST_MACHINES

Factory = Callable[..., RepsysConfig]

SAMPLE = yaml.safe_load((REPO / "collector" / "mqtt" / "sample.yaml").read_text())
SAMPLE_TOPICS = SAMPLE["collector"]["sources"][0]["topics"]

TEST_TOPICS: list[dict[str, Any]] = [
    {"pattern": "plant/{pcn}/{machine}/{signal}", "format": "value"},
    {
        "pattern": "json/{machine}",
        "fields": [{"path": "count", "signal": "part_count", "type": "int"}],
    },
    {"pattern": "seq/{machine}", "fields": [{"path": "n", "signal": "part_count", "type": "int"}]},
]


def mqtt_source(port: int, topics: list[Any], **extra: Any) -> dict[str, Any]:
    # A session of its own per test: the session broker outlives tests, and a persistent
    # session would otherwise hand one test the messages queued for another.
    extra.setdefault("client_id", f"test-{uuid.uuid4().hex[:8]}")
    return {"type": "mqtt", "name": "broker", "port": port, "topics": topics, **extra}


def publisher(port: int, client_id: str = "") -> mqtt.Client:
    client_id = client_id or f"pub-{uuid.uuid4().hex[:8]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(0, 1)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    assert connected.wait(10)
    return client


def test_plant_formats_land_in_partitions_with_local_times(
    make_config: Factory, mqtt_port: int, redis_client: redis.Redis, started: list[InThread]
) -> None:
    cfg = make_config(
        plant={"timezone": "America/Chicago"},
        collector={"sources": [mqtt_source(mqtt_port, SAMPLE_TOPICS)]},
        sim=sim_section(free_port(), mqtt_port, opcua={"enabled": False}),
    )
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: (
            sample(
                registry,
                "repsys_collector_source_connected",
                {"reader": "mqtt", "source": "broker"},
            )
            == 1
        ),
        timeout=10,
        what="subscribed",
    )
    started.append(run_sim(cfg)[1])

    def names() -> set[tuple[str, str]]:
        return {(s.machine, s.name) for _, _, s in stream_signals(redis_client, 4)}

    wanted = {("cnc103", "machining_event"), ("cnc101", "part_count"), ("cnc102", "spindle_load")}
    wait_until(lambda: wanted <= names(), timeout=30, what="signals of every format")
    signals = stream_signals(redis_client, 4)
    for partition, _, sig in signals:
        assert partition == keys.partition_of(sig.machine, 4)
    event = next(s for _, _, s in signals if s.name == "machining_event" and s.machine == "cnc103")
    assert event.subject in {"T1", "T2", "T3"}
    assert set(event.attrs) == {"pallet", "tool", "counter", "running_total", "start"}
    assert event.attrs["tool"] == event.subject and event.attrs["counter"] == str(event.value)
    # End_Time is local plant time without a zone, to the second: the collector read it
    # in America/Chicago, so it is within a second of the simulated UTC instant.
    local = datetime.fromtimestamp(event.source_ts, ZoneInfo("America/Chicago"))
    assert local.microsecond == 0
    assert abs(event.source_ts - event.receive_ts) < 3600  # not shifted by the zone offset
    assert redis_client.xlen(keys.COLLECTOR_DEAD_LETTERS) == 0


BAD = [
    (
        "json/cnc101",
        b"{not json",
        "not_json",
        "payload is not JSON: Expecting property name enclosed in double quotes: line 1 column 2"
        " (char 1)",
    ),
    ("json/cnc101", b'{"count": "many"}', "bad_value", "'many' is not a number"),
    ("json/cnc101", b'{"count": NaN}', "not_finite", "NaN is not a finite number"),
    ("json/cnc101", b'{"count": -Infinity}', "not_finite", "-Infinity is not a finite number"),
    ("plant/1/cnc101/spindle_load", b"inf", "not_finite", "value is not finite"),
    ("json/cnc101", b"x" * 1_048_576, "too_large", "payload of 1048576 bytes is over 262144"),
    ("other/topic", b"1", "unknown_topic", "no topic pattern matches"),
    ("json/cnc999", b'{"count": 1}', "unknown_machine", "unknown machine 'cnc999'"),
    ("json/cnc101", b'{"other": 1}', "missing_field", "field 'count' is missing"),
    ("json/cnc101", b"\xff\xfe", "not_json", "payload is not UTF-8 text"),
    ("json/cnc101", b"7", "not_object", "payload is not a JSON object"),
]


def test_bad_payloads_go_to_dead_letters_and_the_collector_keeps_running(
    make_config: Factory, mqtt_port: int, redis_client: redis.Redis, started: list[InThread]
) -> None:
    # A subscription left in the collector's persistent session by an older configuration:
    # the broker delivers other/topic, which no configured pattern matches.
    source = mqtt_source(mqtt_port, TEST_TOPICS)
    stale = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=source["client_id"], protocol=mqtt.MQTTv5
    )
    subscribed = threading.Event()
    stale.on_subscribe = lambda *_: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    stale.connect("127.0.0.1", mqtt_port, 30, clean_start=True, properties=props)
    stale.loop_start()
    stale.subscribe("other/#", qos=1)
    assert subscribed.wait(10)
    stale.disconnect()
    stale.loop_stop()
    cfg = make_config(collector={"sources": [source]})
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: (
            sample(
                registry,
                "repsys_collector_source_connected",
                {"reader": "mqtt", "source": "broker"},
            )
            == 1
        ),
        timeout=10,
        what="subscribed",
    )
    pub = publisher(mqtt_port)
    try:
        infos = [pub.publish(topic, payload, qos=1) for topic, payload, _, _ in BAD]
        infos.append(pub.publish("json/cnc102", b'{"count": 42}', qos=1))
        for info in infos:
            info.wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()
    wait_until(
        lambda: any(s.value == 42 for _, _, s in stream_signals(redis_client, 4)),
        timeout=10,
        what="the good message after the bad ones",
    )
    wait_until(
        lambda: redis_client.xlen(keys.COLLECTOR_DEAD_LETTERS) == len(BAD),
        timeout=10,
        what="every dead letter",
    )
    entries: Any = redis_client.xrange(keys.COLLECTOR_DEAD_LETTERS)
    letters = [f for _, f in entries]
    assert [(f["reason"], f["error"]) for f in letters] == [(r, e) for _, _, r, e in BAD]
    assert [f["where"] for f in letters] == [t for t, _, _, _ in BAD]
    big = letters[5]
    assert big["size"] == "1048576" and big["payload"] == "x" * 4096
    assert letters[0]["payload"] == "{not json" and letters[0]["reader"] == "mqtt"
    assert (
        sample(
            registry,
            "repsys_collector_dead_letters_total",
            {"reader": "mqtt", "reason": "not_finite"},
        )
        == 3
    )


def test_broker_restart_loses_no_qos1_message(
    make_config: Factory, redis_client: redis.Redis, started: list[InThread], tmp_path: Path
) -> None:
    broker = MosquittoServer(tmp_path / "mosquitto")
    broker.start()
    try:
        cfg = make_config(collector={"sources": [mqtt_source(broker.port, TEST_TOPICS)]})
        _, registry, coll = run_collector(cfg)
        started.append(coll)
        wait_until(
            lambda: (
                sample(
                    registry,
                    "repsys_collector_source_connected",
                    {"reader": "mqtt", "source": "broker"},
                )
                == 1
            ),
            timeout=10,
            what="subscribed",
        )
        pub = publisher(broker.port)
        try:
            for n in range(300):
                pub.publish("seq/cnc101", json.dumps({"n": n}), qos=1)
                if n == 150:
                    broker.restart()
            wait_until(pub.is_connected, timeout=20, what="publisher back")
        finally:
            # Messages queued while the broker was away go out on reconnect.
            wait_until(
                lambda: len(pub._out_messages) == 0,
                timeout=30,
                what="publisher drained",
            )
            pub.disconnect()
            pub.loop_stop()

        def values() -> set[Any]:
            return {s.value for _, _, s in stream_signals(redis_client, 4) if s.machine == "cnc101"}

        wait_until(lambda: values() >= set(range(300)), timeout=30, what="all 300 messages")
        assert (
            sample(
                registry,
                "repsys_collector_reconnects_total",
                {"reader": "mqtt", "source": "broker", "reason": "connect"},
            )
            >= 1
        )
    finally:
        broker.stop()


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        return resp.read().decode()


def _metric(port: int, line_start: str) -> float:
    for line in _metrics(port).splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_collector_killed_before_writing_gets_the_messages_again(
    mqtt_port: int, tmp_path: Path
) -> None:
    redis_srv = RedisServer(tmp_path / "redis")  # not started: writes cannot succeed yet
    config = {
        "machines": TEST_MACHINES,
        "redis": {"url": redis_srv.url, "socket_timeout_s": 1},
        "logging": {"format": "json", "level": "INFO"},
        "streams": {"partitions": 4},
        "collector": {"sources": [mqtt_source(mqtt_port, TEST_TOPICS, client_id="crash-test")]},
    }
    path = tmp_path / "repsys.yaml"
    path.write_text(yaml.safe_dump(config))

    def start() -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "repsys",
                "-c",
                str(path),
                "--http-port",
                str(port),
                "collector",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "log", "ab"),  # noqa: SIM115 - the child owns it
            start_new_session=True,
        )
        return proc, port

    first, port = start()
    try:
        connected = 'repsys_collector_source_connected{reader="mqtt",source="broker"}'
        wait_until(lambda: _metric(port, connected) == 1, timeout=20, what="first collector")
        pub = publisher(mqtt_port, "crash-publisher")
        infos = [pub.publish("seq/cnc102", json.dumps({"n": n}), qos=1) for n in range(20)]
        for info in infos:
            info.wait_for_publish(10)
        pub.disconnect()
        pub.loop_stop()
        received = 'repsys_collector_signals_received_total{machine="cnc102",reader="mqtt"}'
        wait_until(lambda: _metric(port, received) == 20, timeout=20, what="20 received")
        assert _metric(port, 'repsys_collector_signals_written_total{machine="cnc102"') == 0
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # a crash between receiving and writing
        first.wait(10)
    redis_srv.start()
    second, port = start()
    try:
        client = redis.Redis.from_url(redis_srv.url, decode_responses=True)

        def values() -> list[Any]:
            return [s.value for _, _, s in stream_signals(client, 4) if s.machine == "cnc102"]

        wait_until(
            lambda: sorted(values()) == list(range(20)),
            timeout=30,
            what="the 20 messages, delivered again",
        )
        client.close()
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        assert second.wait(20) == 0
        redis_srv.stop()


def test_broker_outage_of_the_plant_loses_no_tool_tracker_event(
    make_config: Factory, mqtt_port: int, redis_client: redis.Redis, started: list[InThread]
) -> None:
    outage = {"at": 40, "kind": "broker_outage", "duration": 60}  # 3 s of real time
    cfg = make_config(
        collector={"sources": [mqtt_source(mqtt_port, SAMPLE_TOPICS)]},
        sim=sim_section(
            free_port(), mqtt_port, opcua={"enabled": False}, scenario={"faults": [outage]}
        ),
    )
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: (
            sample(
                registry,
                "repsys_collector_source_connected",
                {"reader": "mqtt", "source": "broker"},
            )
            == 1
        ),
        timeout=10,
        what="subscribed",
    )
    sim, sim_thread = run_sim(cfg)
    started.append(sim_thread)
    assert sim.mqtt is not None
    wait_until(
        lambda: sim.mqtt is not None and sim.mqtt.outages == 1, timeout=30, what="the outage"
    )
    assert sim.plant is not None
    outage_start = sim.plant.start_ts + 40

    def events() -> list[Any]:
        return [
            s
            for _, _, s in stream_signals(redis_client, 4)
            if s.name == "machining_event" and s.machine == "cnc101" and s.subject == "T1"
        ]

    # Events from well after the outage have arrived...
    wait_until(
        lambda: any(e.source_ts > outage_start + 120 for e in events()),
        timeout=30,
        what="events after the outage",
    )
    got = sorted(events(), key=lambda e: e.source_ts)
    # ...and the counter of cnc101's T1 (life 198, one count per cycle) has no gap: the
    # events published while the broker was out of reach were delivered afterwards.
    assert [e.value for e in got] == list(range(got[0].value, got[0].value + len(got)))
    assert any(outage_start < e.source_ts < outage_start + 60 for e in got)
