"""Two collector processes on one configuration (the chart's ``collector.replicas: 2``).

Before, both connected to every source with the same MQTT client id: the broker dropped
the older connection each time, so the two took turns disconnecting, and an OPC UA
source was read twice. Now each source is read by the holder of its lease, the other
waits, and takes over when the holder stops or dies; the persistent session (one client
id) passes with it, so what the broker queued in between is delivered once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from core import keys
from core.config import RepsysConfig
from core.metrics import sample
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
from tests.collector.test_mqtt import TEST_TOPICS, mqtt_source, publisher

Factory = Callable[..., RepsysConfig]
LABELS = {"reader": "mqtt", "source": "broker"}


def _publish(port: int, first: int, last: int) -> None:
    pub = publisher(port)
    try:
        infos = [pub.publish("seq/cnc103", b'{"n": %d}' % n, qos=1) for n in range(first, last + 1)]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()


def _counts(client: redis.Redis) -> list[Any]:
    return sorted(s.value for _, _, s in stream_signals(client, 4) if s.name == "part_count")


def _gauge(registry: Any, name: str) -> float:
    return sample(registry, name, LABELS) or 0.0


def test_two_replicas_read_each_source_once_and_one_takes_over_from_the_other(
    make_config: Factory, mqtt_port: int, redis_client: redis.Redis, started: list[InThread]
) -> None:
    source = mqtt_source(mqtt_port, TEST_TOPICS, client_id=f"replicas-{uuid.uuid4().hex[:8]}")
    cfg = make_config(collector={"sources": [source], "source_lease_ttl_s": 1.5})
    runs = [run_collector(cfg), run_collector(cfg)]
    started.extend(run for _, _, run in runs)
    regs = [reg for _, reg, _ in runs]

    def owner() -> int | None:
        owned = [i for i, reg in enumerate(regs) if _gauge(reg, "repsys_collector_source_owned")]
        connected = _gauge(regs[owned[0]], "repsys_collector_source_connected") if owned else 0
        return owned[0] if len(owned) == 1 and connected else None

    wait_until(lambda: owner() is not None, timeout=10, what="one replica reading")
    first = owner()
    assert first is not None
    _publish(mqtt_port, 1, 20)
    wait_until(lambda: _counts(redis_client) == list(range(1, 21)), timeout=10, what="1..20")
    # Three lease lifetimes: before, the two kicked each other off the broker all along.
    deadline = time.monotonic() + 3 * 1.5
    while time.monotonic() < deadline:
        assert owner() == first
        time.sleep(0.1)
    # One heartbeat each (before, both wrote the same key, overwriting each other's counts).
    beats = redis_client.keys(keys.collector_heartbeat(f"{cfg.collector.name}:*"))
    assert len(beats) == 2
    reconnects = {**LABELS, "reason": "connect"}
    assert [sample(reg, "repsys_collector_reconnects_total", reconnects) or 0 for reg in regs] == [
        0,
        0,
    ]

    # The owner stops; the other takes the source, and its session's queued messages.
    runs[first][2].stop()
    _publish(mqtt_port, 21, 40)
    other = 1 - first
    wait_until(
        lambda: _gauge(regs[other], "repsys_collector_source_owned") == 1,
        timeout=10,
        what="the other replica to take over",
    )
    wait_until(lambda: len(_counts(redis_client)) >= 40, timeout=15, what="21..40")
    assert _counts(redis_client) == list(range(1, 41))  # each once


def test_a_source_held_by_a_dead_process_is_taken_when_its_lease_expires(
    make_config: Factory, mqtt_port: int, redis_client: redis.Redis, started: list[InThread]
) -> None:
    source = mqtt_source(mqtt_port, TEST_TOPICS, client_id=f"dead-{uuid.uuid4().hex[:8]}")
    cfg = make_config(collector={"sources": [source], "source_lease_ttl_s": 2})
    # A process killed with -9 leaves its lease to expire: nobody reads until then.
    lease = keys.collector_source_lease(cfg.collector.name, "broker")
    redis_client.set(lease, "dead-host:1:0", px=2000)
    _, registry, run = run_collector(cfg)
    started.append(run)
    assert _gauge(registry, "repsys_collector_source_owned") == 0
    wait_until(
        lambda: _gauge(registry, "repsys_collector_source_connected") == 1,
        timeout=10,
        what="the lease to expire and the source to be read",
    )
    assert redis_client.get(lease) != "dead-host:1:0"
    run.stop()
    assert not redis_client.exists(lease)  # released on a clean stop


def test_replicas_started_while_redis_is_away_both_read_until_it_answers_then_one(
    make_config: Factory, mqtt_port: int, tmp_path: Path, started: list[InThread]
) -> None:
    # Nobody can say who owns a source while Redis is away: both read (into their outage
    # buffers); once Redis answers, the lease says which one goes on.
    redis_srv = RedisServer(tmp_path / "redis")  # not started yet
    source = mqtt_source(mqtt_port, TEST_TOPICS, client_id=f"away-{uuid.uuid4().hex[:8]}")
    cfg = make_config(
        redis={"url": redis_srv.url, "socket_timeout_s": 1},
        collector={"sources": [source], "source_lease_ttl_s": 1.5},
    )
    runs = [run_collector(cfg), run_collector(cfg)]
    started.extend(run for _, _, run in runs)
    regs = [reg for _, reg, _ in runs]

    def owned() -> list[float]:
        return [_gauge(reg, "repsys_collector_source_owned") for reg in regs]

    wait_until(lambda: owned() == [1, 1], timeout=10, what="both reading without Redis")
    redis_srv.start()
    try:
        wait_until(lambda: sorted(owned()) == [0, 1], timeout=15, what="one reader left")
        client = redis.Redis.from_url(redis_srv.url, decode_responses=True)
        lease = client.get(keys.collector_source_lease(cfg.collector.name, "broker"))
        assert lease is not None
    finally:
        for _, _, run in runs:
            run.stop()
        redis_srv.stop()


def test_two_replicas_read_an_opcua_source_once(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    # Before, both subscribed: every value of the node was written twice.
    source = opcua_source(opcua_port, [kepware_node("cnc101", "SpindleLoad", "spindle_load")])
    cfg = make_config(
        collector={"sources": [source], "source_lease_ttl_s": 1.5},
        sim=sim_section(opcua_port, mqtt_port, mqtt={"enabled": False}),
    )
    started.append(run_sim(cfg)[1])
    runs = [run_collector(cfg), run_collector(cfg)]
    started.extend(run for _, _, run in runs)

    def loads() -> list[float]:
        return [
            s.source_ts for _, _, s in stream_signals(redis_client, 4) if s.name == "spindle_load"
        ]

    wait_until(lambda: len(loads()) >= 30, timeout=30, what="30 spindle load samples")
    owners = [sample(reg, "repsys_collector_source_owned", {"reader": "opcua", "source": "plant"})
              for _, reg, _ in runs]  # fmt: skip
    assert sorted(o or 0 for o in owners) == [0, 1]
    seen = loads()
    assert len(seen) == len(set(seen))  # each sample once
