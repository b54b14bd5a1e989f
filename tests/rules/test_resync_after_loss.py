"""Events lost while the collector was down are no roll-back of the next one.

Found by the chaos soak on Okuma UDP (decision 0470): UDP has no acknowledgement, so the
datagrams a machine sent while the collector restarted are gone, and the next reading of
the tool did not continue from the last one the rules had: "counter 4 on pallet 2 after 1
on pallet 1, 2 expected", a false ticket. The collector marks the first event of each tool
after its start ``resync: "1"`` (events before it may be missing), and the tool's counter
history ends there: that reading is compared with nothing, the next ones with it.
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
    specs = default_specs(["cnc301"])
    cfg = soak_config(specs)
    plant = Plant(specs, seed=3, start_ts=T0)
    return Program(cfg), list(through_mqtt(cfg, plant.advance(SECONDS)))


def _uses(signals: list[Signal], tool: str) -> list[int]:
    """Indexes of the tool's machining events that count (not the START commands)."""
    return [
        i
        for i, s in enumerate(signals)
        if s.name == "machining_event"
        and (s.subject or s.attrs.get("tool")) == tool
        and s.attrs.get("cmd") != "50"
    ]


def _drop_events(signals: list[Signal], tool: str, n: int, at: int) -> tuple[list[Signal], int]:
    """``signals`` without ``n`` events of ``tool`` from its ``at``-th; the index of the
    first event kept after the gap."""
    events = _uses(signals, tool)
    gone = set(events[at : at + n])
    kept = [s for i, s in enumerate(signals) if i not in gone]
    after = events[at + n]
    return kept, after - n


def test_a_reading_after_lost_events_is_compared_with_nothing_when_marked() -> None:
    program, signals = _signals()
    assert run_rules(program, signals, T0 + SECONDS) == []
    tool = next(s.subject or s.attrs["tool"] for s in signals if s.name == "machining_event")
    gapped, first = _drop_events(signals, tool, 3, 10)
    found = run_rules(program, gapped, T0 + SECONDS)
    # The plants' rule on its own: the reading after the gap is "rolled back".
    assert [(e.rule, e.subject) for e in found] == [("counter_rollback", tool)]
    sig = gapped[first]
    gapped[first] = replace(sig, attrs={**sig.attrs, "resync": "1"})
    # Marked by the collector: nothing (before the fix: the same roll-back).
    assert run_rules(program, gapped, T0 + SECONDS) == []


def test_a_marked_reading_still_lets_a_real_rollback_after_it_be_seen() -> None:
    program, signals = _signals()
    tool = next(s.subject or s.attrs["tool"] for s in signals if s.name == "machining_event")
    gapped, first = _drop_events(signals, tool, 3, 10)
    sig = gapped[first]
    gapped[first] = replace(sig, attrs={**sig.attrs, "resync": "1"})
    events = [i for i in _uses(gapped, tool) if i > first]
    later = gapped[events[4]]
    counter = float(later.attrs["counter"]) if "counter" in later.attrs else float(str(later.value))
    back = counter - 3 * 2  # well short of what the other pallet's last reading says
    gapped[events[4]] = replace(
        later,
        value=back,
        attrs={**later.attrs, **({"counter": repr(back)} if "counter" in later.attrs else {})},
    )
    found = run_rules(program, gapped, T0 + SECONDS)
    assert ("counter_rollback", tool) in [(e.rule, e.subject) for e in found]


def test_a_jump_on_the_marked_reading_is_still_a_jump() -> None:
    """Found by the chaos soak (seed 4): the first datagram after the collector's restart
    was the jumping one, and a history that ended at the mark hid it. The jump test's
    limit is the time since the pallet's last reading, so lost readings do not excuse a
    jump: only the roll-back test (a reading must continue the last one) stands down."""
    specs = default_specs(["cnc301"])
    cfg = soak_config(specs)
    jump = Fault(900.0, FaultKind.COUNTER_JUMP, machine="cnc301", tool="T1", amount=50)
    plant = Plant(specs, Scenario(faults=(jump,)), seed=3, start_ts=T0)
    signals = list(through_mqtt(cfg, plant.advance(SECONDS)))
    program = Program(cfg)
    expected = [(e.rule, e.subject) for e in run_rules(program, signals, T0 + SECONDS)]
    assert expected == [("counter_jump", "T1")]
    uses = _uses(signals, "T1")
    at = next(i for i in uses if signals[i].source_ts >= T0 + 900.0)
    # Lost: the two uses before the jump; the jump is the first reading after the restart.
    lost = set(uses[uses.index(at) - 2 : uses.index(at)])
    gapped = [s for i, s in enumerate(signals) if i not in lost]
    first = next(i for i, s in enumerate(gapped) if s is signals[at])
    gapped[first] = replace(gapped[first], attrs={**gapped[first].attrs, "resync": "1"})
    found = [(e.rule, e.subject) for e in run_rules(program, gapped, T0 + SECONDS)]
    # Before: [] (the history ended at the mark).
    assert found == expected
