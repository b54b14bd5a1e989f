"""The simulated plant speaking Okuma UDP and Sparkplug B, end to end into the streams.

One machine sends its machining events as M208 datagrams, another is a device of a
Sparkplug B edge node on the tests' mosquitto; the collector's ``udp`` and ``sparkplug``
readers put them into the signal streams, and what lands is compared with what the
simulator sent.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from typing import Any

import redis

from collector.sparkplug.proto import Payload
from collector.udp.frame import parse
from core.config import RepsysConfig
from core.metrics import sample
from core.model import Quality
from repsys.servers import wait_until
from sim.plant.model import Plant
from sim.plant.mqtt_publisher import PlantPublisher
from sim.plant.scenario import Scenario
from sim.plant.service import SimPlant, machine_specs
from sim.plant.sparkplug_publisher import datatype, metric, payload
from sim.plant.udp_sender import UdpSender
from tests.collector.conftest import InThread, run_collector, stream_signals


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sim_and_sources(port: int, mqtt_port: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sim = {
        "plant": {
            "speed": 20,
            "tick_s": 0.05,
            "opcua": {"enabled": False},
            "mqtt": {"enabled": False},
            "machines": [
                {"id": "cnc101", "cycle_time_s": 4, "load_time_s": 1},
                {"id": "cnc102", "cycle_time_s": 4, "load_time_s": 1},
            ],
            "udp": {"enabled": True, "port": port, "machines": ["cnc101"]},
            "sparkplug": {"enabled": True, "port": mqtt_port, "machines": ["cnc102"]},
        }
    }
    sources = [
        {
            "type": "udp",
            "name": "okuma",
            "host": "127.0.0.1",
            "port": port,
            # The default tools: T3 counts 2 per event.
            "workcenters": [{"key": 61101, "machine": "cnc101", "increments": {3: 2}}],
        },
        {
            "type": "sparkplug",
            "name": "ignition",
            "port": mqtt_port,
            "groups": ["Plant"],
            "unmapped": "snake",
            "rebirth_min_interval_s": 0.2,
            "nodes": [
                {
                    "group": "Plant",
                    "edge_node": "sim-plant",
                    "device": "cnc102",
                    "machine": "cnc102",
                }
            ],
        },
    ]
    return sim, sources


def test_a_udp_machine_and_a_sparkplug_machine_land_in_the_streams(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    mqtt_port: int,
    started: list[InThread],
) -> None:
    port = udp_port()
    sim_section, sources = sim_and_sources(port, mqtt_port)
    cfg = make_config(sim=sim_section, collector={"sources": sources})
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    ready = [{"reader": "udp", "source": "okuma"}, {"reader": "sparkplug", "source": "ignition"}]
    wait_until(
        lambda: all(sample(registry, "repsys_collector_source_connected", r) == 1 for r in ready),
        timeout=10,
        what="udp and sparkplug readers ready",
    )
    plant = SimPlant(cfg)
    runner = InThread(plant.run).start()
    started.append(runner)
    assert plant.udp is not None and plant.sparkplug is not None
    udp, spb = plant.udp, plant.sparkplug
    wait_until(lambda: udp.sent >= 12, timeout=30, what="machining events sent")
    runner.stop()  # the edge node's clean stop publishes its NDEATH

    sent = [d for d in udp.datagrams_sent if d[0] == 51]

    def udp_events() -> list[tuple[str, int]]:
        return [
            (s.subject, int(s.value))  # type: ignore[arg-type]  # machining_event: an int
            for _, _, s in stream_signals(redis_client, 4)
            if s.machine == "cnc101" and s.name == "machining_event" and s.attrs["cmd"] == "51"
        ]

    want = [(f"T{tool}", counter) for _, _, tool, counter in sent]
    wait_until(lambda: udp_events() == want, timeout=15, what="every END in the stream")
    ends = [
        s
        for _, _, s in stream_signals(redis_client, 4)
        if s.machine == "cnc101" and s.name == "machining_event" and s.attrs["cmd"] == "51"
    ]
    assert all("start" in s.attrs for s in ends)  # each END has its START

    born = spb.metrics["cnc102"]
    assert {"part_count", "run_state", "spindle_load", "program"} <= set(born)

    def last_good() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _, _, s in stream_signals(redis_client, 4):
            if s.machine == "cnc102" and s.quality is Quality.GOOD:
                out[s.name] = s.value
        return out

    want_values = {name: v for name, (_, _, v, _) in born.items()}
    wait_until(lambda: last_good() == want_values, timeout=15, what="every metric's last value")
    assert isinstance(last_good()["part_count"], int)
    assert isinstance(last_good()["spindle_load"], float)

    def dead() -> set[str]:
        return {
            s.name
            for _, _, s in stream_signals(redis_client, 4)
            if s.machine == "cnc102" and s.quality is Quality.NO_DATA
        }

    wait_until(lambda: dead() == set(born), timeout=15, what="the death as no data")


def test_a_machine_on_udp_or_sparkplug_is_not_published_twice_over_mqtt(
    make_config: Callable[..., RepsysConfig],
) -> None:
    sim_section, _ = sim_and_sources(2222, 1883)
    cfg = make_config(sim=sim_section)
    plant = Plant(machine_specs(cfg), Scenario(name="clean"), seed=0)
    signals = plant.advance(600.0)
    machines = list(cfg.machines)
    both = PlantPublisher(cfg.sim.plant.mqtt, machines)
    split = PlantPublisher(
        cfg.sim.plant.mqtt, machines, udp=frozenset({"cnc101"}), sparkplug=frozenset({"cnc102"})
    )
    before = both.messages(signals)
    after = split.messages(signals)
    tracker = {"InsAssemblyMachiningHistory", "InsToolLifeHistoryV2"}

    def machines_on(msgs: list[tuple[str, str, bool]], topics: set[str]) -> set[Any]:
        return {json.loads(p)["Workcenter_Key"] for t, p, _ in msgs if t in topics}

    assert machines_on(before, tracker) == {61101, 61102}
    assert machines_on(after, tracker) == {61102}  # cnc101's go out as datagrams
    assert any("/cnc102/" in t for t, _, _ in before)
    assert not any("/cnc102/" in t or t == "focas/cnc102" for t, _, _ in after)
    # The UDP machine's datagrams are what the collector's frame parser reads.
    sender = UdpSender(cfg.sim.plant.udp, machines)
    sent = sender.datagrams(signals)
    assert sent
    for fields, data in sent:
        dgram = parse(data, framing="required", max_data_bytes=160)
        assert (dgram.workcenter_key, dgram.set_no) == (61101, 60)
        assert tuple(dgram.values) == fields


def test_the_sims_sparkplug_payloads_parse_with_the_protobuf_runtime() -> None:
    """The hand-written wire format against Tahu's schema (the collector's descriptor)."""
    values: list[Any] = [-7, 4_000_000_000, 42.5, True, False, "ACTIVE", "", None]
    body = payload(
        [metric(v, datatype(v), name=f"m{i}", alias=i, ts_ms=17) for i, v in enumerate(values)],
        ts_ms=1_733_580_000_000,
        seq=255,
    )
    msg = Payload()
    msg.ParseFromString(body)
    assert (msg.timestamp, msg.seq) == (1_733_580_000_000, 255)
    got: list[Any] = []
    for m in msg.metrics:
        if m.is_null:
            got.append(None)
        elif m.datatype == 4:
            got.append(struct.unpack("<q", struct.pack("<Q", m.long_value))[0])
        else:
            got.append(getattr(m, m.WhichOneof("value")))
    assert got == values
    assert [(m.name, m.alias, m.timestamp) for m in msg.metrics] == [
        (f"m{i}", i, 17) for i in range(len(values))
    ]
