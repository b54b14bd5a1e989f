"""An alarm message delivered again is the same raise, not the alarm coming back.

Found by the chaos soak (seed 2, decision 0460): after a collector restart the broker
delivered the alarm messages it had not seen acknowledged again, and the alarm topic's
payload carried no time, so each delivery was a raise at its own receive time: "Alarm 2001
on CNC309 keeps coming back: 5 times within 10 min" for one jammed pallet. The simulated
plant's alarm messages now carry the control's time (``time``, epoch ms; the soak and demo
configs read it), and ``alarm_frequency`` counts a raise at a source time once.
"""

from __future__ import annotations

import json
from dataclasses import replace

from collector.mqtt.decode import MessageDecoder
from core.config.collector import MqttSource
from core.model import Signal
from repsys.soak import run_rules, soak_config, through_mqtt
from rules.engine import Program
from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario

T0 = 1_700_049_600.0
SECONDS = 1800.0


def _plant(faults: tuple[Fault, ...]) -> tuple[Program, list[Signal]]:
    specs = default_specs(["cnc301"])
    cfg = soak_config(specs)
    plant = Plant(specs, Scenario(faults=faults), seed=4, start_ts=T0)
    return Program(cfg), list(through_mqtt(cfg, plant.advance(SECONDS)))


def test_a_breakdowns_alarm_delivered_five_times_is_one_raise() -> None:
    program, signals = _plant(
        (Fault(600.0, FaultKind.MACHINE_DOWN, machine="cnc301", duration_s=300),)
    )
    alarms = [s for s in signals if s.name == "alarm"]
    assert alarms
    once = {(e.rule, e.subject) for e in run_rules(program, signals, T0 + SECONDS)}
    assert ("alarm_frequency", str(alarms[0].value)) not in once
    again: list[Signal] = []
    for sig in signals:
        again.append(sig)
        if sig.name == "alarm":
            # Delivered again after each of four collector restarts, seconds apart.
            again += [replace(sig, receive_ts=sig.receive_ts + 5.0 * k) for k in range(1, 5)]
    found = {(e.rule, e.subject) for e in run_rules(program, again, T0 + SECONDS)}
    # Before: ("alarm_frequency", the code): 5 times within 10 min.
    assert found == once


def test_alarm_bursts_still_count_each_raise() -> None:
    burst = Fault(300.0, FaultKind.ALARM_BURST, machine="cnc301", duration_s=900)
    program, signals = _plant((burst,))
    found = [(e.rule, e.subject) for e in run_rules(program, signals, T0 + SECONDS)]
    assert [r for r, _ in found].count("alarm_frequency") == 1


def test_the_alarm_topic_reads_the_controls_time() -> None:
    cfg = soak_config(default_specs(["cnc301"]))
    source = cfg.collector.sources[0]
    assert isinstance(source, MqttSource)
    decoder = MessageDecoder(source, cfg.machines, cfg.plant.timezone)
    body = {"code": 2001, "time": 1_700_049_612_345, "active": "true", "text": "", "severity": ""}
    (sig,) = decoder.decode("alarms/123681/cnc301", json.dumps(body).encode(), 1_700_049_700.0)
    assert (sig.name, sig.value, sig.source_ts) == ("alarm", 2001, 1_700_049_612.345)
