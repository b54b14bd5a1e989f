"""A machining event delivered twice is one use of the tool, not a roll-back.

Found by the chaos soak (decision 0400): MQTT is at least once, so messages the collector
had written but not yet acknowledged when it was killed come again after its restart, and
their signals are in the stream twice. The counter rules saw the tool's same event a second
time and filed "Counter rolled back on Tool 3: counter 4 on pallet 1 after 4 on pallet 1,
6 expected". The event equal to the tool's last one (pallet, counter, start) is dropped.
"""

from __future__ import annotations

from dataclasses import replace

from core.model import Signal
from repsys.soak import run_rules, soak_config, through_mqtt
from rules.engine import Program
from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario

T0 = 1_700_049_600.0
SECONDS = 1800.0


def _signals() -> tuple[Program, list[Signal]]:
    specs = default_specs(["cnc301", "cnc302"])
    cfg = soak_config(specs)
    plant = Plant(specs, seed=2, start_ts=T0)
    return Program(cfg), list(through_mqtt(cfg, plant.advance(SECONDS)))


def test_every_machining_event_delivered_twice_opens_no_episode() -> None:
    program, signals = _signals()
    assert run_rules(program, signals, T0 + SECONDS) == []
    twice: list[Signal] = []
    for sig in signals:
        twice.append(sig)
        if sig.name == "machining_event":
            # Redelivered a moment later, as the collector writes it again after a restart.
            twice.append(replace(sig, receive_ts=sig.receive_ts + 0.5))
    found = run_rules(program, twice, T0 + SECONDS)
    # Before: a counter_rollback episode per tool and pallet ("after 4 on pallet 1").
    assert [(e.machine, e.rule, e.subject) for e in found] == []


def test_a_premature_change_delivered_again_with_its_change_signal_is_one_change() -> None:
    """Found by the chaos soak (seed 2, decision 0460): a collector restarted during a
    Redis failover wrote the tool tracker's messages again, the tool change signal
    (``InsToolLifeHistoryV2``) between the event and its copies. The change cleared the
    tool's last event, so each copy counted as another use on pallet 1: "Pallet 2 looped
    out on CNC302: the last 5 events of Tool 2 ran on pallets 1, 1, 1, 1, 1" - one event,
    five times."""
    specs = default_specs(["cnc301"])
    cfg = soak_config(specs)
    fault = Fault(600.0, FaultKind.PREMATURE_TOOL_CHANGE, machine="cnc301", tool="T1")
    plant = Plant(specs, Scenario(faults=(fault,)), seed=2, start_ts=T0)
    signals = list(through_mqtt(cfg, plant.advance(SECONDS)))
    program = Program(cfg)
    once = [(e.rule, e.subject) for e in run_rules(program, signals, T0 + SECONDS)]
    assert once == [("tool_life_short", "T1")]
    change = next(i for i, s in enumerate(signals) if s.name == "tool_change")
    pair = [s for s in signals[change - 2 : change + 3] if s.subject == "T1"]
    assert {s.name for s in pair} == {"tool_change", "machining_event"}
    again = signals[: change + 3]
    for k in range(1, 5):  # four more deliveries of the pair, a second apart
        again += [replace(s, receive_ts=s.receive_ts + k) for s in pair]
    again += signals[change + 3 :]
    found = [(e.rule, e.subject) for e in run_rules(program, again, T0 + SECONDS)]
    # Before: also ("pallet_looped_out", ...) and roll-backs of the copies.
    assert found == once
