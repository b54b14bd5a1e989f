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
