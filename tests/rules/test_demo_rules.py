"""The demo's rules on the demo's simulated plant: a ticket from cnc103 within a minute.

``config/demo.yaml`` configures both the simulated plant (cnc103 changes tool T1 long
before its life) and the rules; this runs the plant's first 70 s through the engine with
exactly that configuration. A clean plant (no fault injected), its signals taken through
the demo's MQTT formats and the collector's decoder as the demo's rules receive them,
files nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import yaml

from collector.mqtt.decode import MessageDecoder
from collector.udp.decode import DatagramDecoder
from collector.udp.decode import signals as udp_signals
from core.config import RepsysConfig, parse_config
from core.config.collector import MqttSource
from core.config.collector_udp import UdpSource
from core.model import Signal
from rules.engine import Program
from rules.replay import replay
from sim.plant.model import Plant
from sim.plant.mqtt_publisher import PlantPublisher
from sim.plant.scenario import Scenario
from sim.plant.service import machine_specs, scenario_of
from sim.plant.udp_sender import UdpSender
from tests.conftest import REPO


def demo_config() -> RepsysConfig:
    text = (REPO / "config" / "demo.yaml").read_text()
    # The placeholders repsys demo fills in: a Redis URL, the work folder, ports.
    fill = {"REDIS_URL": "redis://127.0.0.1:1/0", "WORKDIR": "/tmp/repsys-demo"}
    text = re.sub(r"@([A-Z_]+)@", lambda m: fill.get(m.group(1), "1"), text)
    return parse_config(yaml.safe_load(text), file="demo.yaml")


def through_mqtt(cfg: RepsysConfig, signals: list[Signal]) -> Iterator[Signal]:
    """The plant's signals as the demo's rules get them: MQTT formats and the collector's
    decoder, and for the Okuma machine (cnc130) its datagrams and the collector's UDP
    decoder, with the receive time as the datagram's time (a datagram carries none).
    cnc140's values go as Sparkplug B metrics, which the plants' rules do not read."""
    machines = list(cfg.machines)
    plant = cfg.sim.plant
    publisher = PlantPublisher(
        plant.mqtt,
        machines,
        cfg.plant.timezone,
        udp=frozenset(plant.udp.machines),
        sparkplug=frozenset(plant.sparkplug.machines),
    )
    [source] = [s for s in cfg.collector.sources if isinstance(s, MqttSource)]
    decoder = MessageDecoder(source, machines, cfg.plant.timezone)
    [okuma] = [s for s in cfg.collector.sources if isinstance(s, UdpSource)]
    datagrams = DatagramDecoder(okuma)
    sender = UdpSender(plant.udp, machines)
    for sig in signals:
        for topic, payload, _ in publisher.messages([sig]):
            yield from decoder.decode(topic, payload.encode(), sig.receive_ts)
        for _fields, data in sender.datagrams([sig]):
            yield from udp_signals(datagrams.decode(data, sig.source_ts))


#: The plants' rules (DOMAIN.md section 3) and the tool-life rules of the demo.
PLANT_RULES = {
    "counter_jump",
    "counter_rollback",
    "pallet_looped_out",
    "tool_life_short",
    "tool_life_overrun",
    "tool_change_forecast",
}


def test_a_clean_demo_plant_files_no_ticket_through_the_demos_mqtt_path() -> None:
    cfg = demo_config()
    rules = [r for r in cfg.rules.rules if r.type in PLANT_RULES]
    assert {r.type for r in rules} == PLANT_RULES
    cfg = cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"rules": rules})})
    plant = Plant(machine_specs(cfg), Scenario(name="clean"), seed=cfg.sim.plant.seed)
    # Two hours: tools reach their lives and are changed (the counter back to 0), tool 3
    # counts by 2 on both pallets.
    signals = list(through_mqtt(cfg, plant.advance(2 * 3600.0)))
    result = replay(Program(cfg), signals)

    events = [s for s in signals if s.name == "machining_event"]
    assert {s.machine for s in events} == {m.id for m in cfg.machines}
    # The MQTT tool tracker does not say the increment; the UDP run accounting does.
    assert "increment" not in next(e for e in events if e.machine == "cnc101").attrs
    udp = [e for e in events if e.machine == "cnc130" and e.attrs.get("cmd") == "51"]
    assert udp and all("running_total" in e.attrs for e in udp)
    changes = {(s.machine, s.subject) for s in signals if s.name == "tool_change"}
    assert {("cnc101", "T1"), ("cnc102", "T1"), ("cnc103", "T2")} <= changes
    assert [(r["machine"], r["rule"], r["summary"]) for r in result.ledger.rows()] == []
    assert result.ledger.tickets == {}
    # The rules were armed: each machine learned its fastest cycle and forecasts its tools.
    for m in result.engine.machines.values():
        assert m.fastest_cycle, m.id
    assert len([v for v in result.forecasts.values() if v is not None]) >= 4


def test_the_demo_plant_gives_a_tooling_ticket_on_cnc103_within_a_minute() -> None:
    cfg = demo_config()
    plant = Plant(machine_specs(cfg), scenario_of(cfg), seed=cfg.sim.plant.seed)
    result = replay(Program(cfg), plant.advance(70.0))
    rows = result.ledger.rows()
    assert [(r["machine"], r["rule"], r["subject"]) for r in rows] == [
        ("cnc103", "tool_life_short", "T1")
    ]
    [ticket] = result.ledger.tickets.values()
    assert ticket["title"] == "Tooling Issue: Tool 1 on CNC 103 is not reaching tool life"
    assert rows[0]["summary"].startswith("Tool 1 on CNC 103 is not reaching tool life: changed at")


def _as_collected(sig: Signal) -> Signal | None:
    """A signal as the demo's collector writes it, None when the demo does not collect it.

    cnc101, cnc102 and cnc120 have no tool-life nodes: their tools are known from the MQTT
    tool tracker alone, whose InsAssemblyMachiningHistory carries pallet, tool, counter,
    start and end but no increment (sim/plant/mqtt_publisher.py, config/demo.yaml).
    """
    if sig.machine == "cnc103":
        return sig
    if sig.name == "tool_life":
        return None
    if sig.name == "machining_event":
        attrs: dict[str, str] = {
            k: sig.attrs[k] for k in ("pallet", "tool", "counter") if k in sig.attrs
        }
        return dataclasses.replace(sig, attrs=attrs)
    return sig


def test_the_demo_files_only_what_its_scenario_injects_through_the_mqtt_tool_tracker() -> None:
    # The live demo filed "Counter rolled back on Tool 3 ... counter 6 on pallet 1 after 4
    # on pallet 2, 5 expected" on cnc101, cnc102 and cnc120: no event was lost; T3 counts
    # 2 a cycle in the simulator, and neither the MQTT message nor the rules knew it.
    cfg = demo_config()
    plant = Plant(machine_specs(cfg), scenario_of(cfg), seed=cfg.sim.plant.seed)
    signals = [c for c in map(_as_collected, plant.advance(900.0)) if c is not None]
    rows = replay(Program(cfg), signals).ledger.rows()
    # The scenario: cnc103's early T1 changes, cnc120's worn T1, cnc102's breakdown at
    # 300 s (every 900 s).
    assert sorted({(r["machine"], r["rule"]) for r in rows}) == [
        ("cnc102", "downtime"),
        ("cnc103", "tool_life_short"),
        ("cnc120", "spindle_load_drift"),
    ]
    assert len(rows) == 3


def test_a_clean_demo_shift_files_no_drift_or_any_other_ticket_but_cycle_time() -> None:
    # The demo plant with nothing injected, eight hours. Before, the demo's drift threshold
    # (10 points) sat below a tool's normal wear in the simulator (up to 25 points): 24
    # spindle_load_drift episodes in a clean shift.
    data = yaml.safe_load(re.sub(r"@([A-Z_]+)@", "1", (REPO / "config" / "demo.yaml").read_text()))
    data["sim"]["plant"]["scenario"] = {"name": "clean", "faults": []}
    cfg = parse_config(data, file="demo.yaml")
    plant = Plant(machine_specs(cfg), scenario_of(cfg), seed=cfg.sim.plant.seed)

    def shift() -> Iterator[Signal]:
        for _hour in range(8):
            yield from (c for c in map(_as_collected, plant.advance(3600.0)) if c is not None)

    rows = replay(Program(cfg), shift()).ledger.rows()
    # cycle_time (issue 27): the designed defaults file about 0.08 false tickets per
    # machine-week; this shift (cnc103: 2,400 cycles of 12 s) has one, a stretch of 34
    # cycles 0.85 sigma fast at 04:05 (about a 0.5 % chance under the design).
    assert [(r["machine"], r["rule"]) for r in rows if r["rule"] != "cycle_time"] == []
    assert len(rows) <= 1
