"""The engine's plant rules against a plain reference on generated machining-event streams.

``tests/rules/plant_reference.py`` writes the four formulas of DOMAIN.md section 3 plainly
(no code shared with ``rules/``). Hypothesis generates streams of one machine: two-pallet
and one-pallet machines and tools, 2 to 4 tools each with its own start and end inside the
pallet's cut, increments 1 and 2, lives 198 to 2498, pallet alternation with short and
long repeats, forward skips, jumps, counters going back, early tool changes and changes
at life, idle gaps across shift boundaries. The engine's episodes must equal the
reference's flags, but for these accepted readings (each one a rule below):

1. **Loop-out repeats**: a repeat of a pallet (a tool's event on the pallet of its
   previous event) whose run on that pallet is reported as a loop-out, at that event or a
   later one of the same run, is not also a roll-back (``counter_rollback``'s
   ``loop_out_events``). The reference reports every repeat that does not continue from
   the other pallet.
2. **Open runs**: a repeat's roll-back is reported when its run ends (another pallet; a
   tool change does not end it); a run still open when the stream ends is not reported
   yet.
3. Readings where DOMAIN.md is silent are read the same way on both sides and marked
   ``READING:`` in the reference: readings belong to a tool life; a reset comes from
   above twice the increment; a one-pallet tool continues from its own last reading;
   fewer than 5 events since the shift started decide no loop-out.

Times are whole seconds, so "non-zero" cycle times are the engine's ``min_cycle_time_s``
(1 s) and up.

``make test`` runs 1,000 streams; ``REPSYS_TEST_PROFILE=soak`` runs 20,000.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import parse_config
from core.model import Quality, Signal
from rules.engine import Program
from rules.replay import DEFAULT_MACHINES, replay
from tests.rules.plant_reference import Event, Flags, Tool, evaluate

SOAK = os.environ.get("REPSYS_TEST_PROFILE") == "soak"
EXAMPLES = 20_000 if SOAK else 1_000
ZONE = "America/Chicago"
SHIFTS = ["06:00", "14:00", "22:00"]
#: 2023-11-14 06:00 CST, a shift start.
SHIFT_0 = int(datetime(2023, 11, 14, 12, 0, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class MachineSetup:
    id: str
    pallets: int  # pallets of the machine
    tools: dict[str, Tool]


#: Machines of the generated streams: one- and two-pallet, 2 to 4 tools, increments 1 and 2,
#: tools run by one or two pallets, lives from the plants' list.
SETUPS = [
    MachineSetup("cnc101", 2, {
        "T1": Tool("T1", 198, 1, 2), "T2": Tool("T2", 348, 1, 2)}),
    MachineSetup("cnc102", 2, {
        "T1": Tool("T1", 798, 2, 2), "T2": Tool("T2", 198, 1, 1), "T3": Tool("T3", 2498, 2, 2)}),
    MachineSetup("cnc103", 1, {
        "T1": Tool("T1", 198, 1, 1), "T2": Tool("T2", 1798, 2, 1)}),
    MachineSetup("cnc120", 2, {
        "T1": Tool("T1", 348, 1, 2), "T2": Tool("T2", 798, 1, 2), "T3": Tool("T3", 2498, 2, 1),
        "T4": Tool("T4", 198, 2, 2)}),
]  # fmt: skip

PLANT_RULES = ["counter_jump", "counter_rollback", "pallet_looped_out", "tool_life_short"]


def _program() -> Program:
    machines: dict[str, Any] = {
        s.id: {
            "cycle_source": "machining_event",
            "tools": {
                t.name: {"life": t.life, "increment": t.increment, "pallets": t.pallets}
                for t in s.tools.values()
            },
        }
        for s in SETUPS
    }
    # Every flag its own episode: no keep-firing window, no group wait.
    rules = [{"name": r, "type": r, "keep_firing_for_s": 0} for r in PLANT_RULES]
    return Program(
        parse_config({
            "machines": DEFAULT_MACHINES,
            "plant": {"timezone": ZONE},
            "rules": {"shifts": SHIFTS, "group_wait_s": 0, "machines": machines, "rules": rules},
        })
    )  # fmt: skip


PROGRAM = _program()

# --- streams ---------------------------------------------------------------------------

#: What happens to a tool's counter at one event (the first entries are the common case,
#: and what hypothesis shrinks towards).
MOVES = ["ok"] * 12 + ["skip", "jump", "back", "same", "change"]
#: Events in a row on one pallet: mostly 1 (alternation), short repeats, loop-outs.
RUNS = [1] * 8 + [2, 3, 4, 5, 6, 8]
#: Idle time before a cut: mostly none, sometimes minutes, sometimes hours (shifts).
GAPS = [0] * 10 + [120, 900, 3 * 3600, 9 * 3600]


@st.composite
def streams(draw: st.DrawFn) -> tuple[MachineSetup, list[Event]]:
    setup = draw(st.sampled_from(SETUPS))
    t = SHIFT_0 + draw(st.integers(-3 * 3600, 3 * 3600))
    cut_s = draw(st.integers(20, 300))
    share = draw(st.sampled_from([0.3, 0.6, 0.9]))
    counters = {
        name: draw(st.integers(0, tool.life // tool.increment)) * tool.increment
        for name, tool in setup.tools.items()
    }
    pallet = draw(st.sampled_from(["1", "2"])) if setup.pallets > 1 else "1"
    events: list[Event] = []
    cuts = draw(st.integers(1, 40))
    done = 0
    while done < cuts:
        run = draw(st.sampled_from(RUNS)) if setup.pallets > 1 else cuts
        for _ in range(min(run, cuts - done)):
            done += 1
            t += draw(st.sampled_from(GAPS)) + draw(st.integers(5, 30))  # idle, then load
            length = cut_s + draw(st.integers(0, 20))
            tools = [x for x in setup.tools.values() if x.pallets > 1 or pallet == "1"]
            slot = length // len(setup.tools)
            for n, tool in enumerate(tools):
                inc = tool.increment
                c = counters[tool.name]
                move = draw(st.sampled_from(MOVES))
                if c >= tool.life:
                    c = draw(st.sampled_from([0, inc, 2 * inc]))  # changed at its life
                elif move == "ok":
                    c += inc
                elif move == "skip":
                    c += inc * draw(st.integers(2, 6))
                elif move == "jump":
                    c += inc * draw(st.integers(20, 400))
                elif move == "back":
                    c = max(0, c - inc * draw(st.integers(1, 5)))
                elif move == "change":
                    c = draw(st.sampled_from([0, inc, 2 * inc]))
                counters[tool.name] = c
                start = t + n * slot
                events.append(Event(tool.name, pallet, c, start, start + max(1, int(slot * share))))
            t += length
        if setup.pallets > 1:
            pallet = "2" if pallet == "1" else "1"
    return setup, events


def to_signals(machine: str, events: list[Event]) -> list[Signal]:
    """The events as the MQTT tool tracker's decoder gives them (time = End_Time)."""
    events = sorted(events, key=lambda e: e.end)
    return [
        Signal(
            machine=machine,
            name="machining_event",
            value=e.counter,
            quality=Quality.GOOD,
            source_ts=float(e.end),
            receive_ts=float(e.end),
            subject=e.tool,
            attrs={
                "pallet": e.pallet,
                "tool": e.tool,
                "counter": str(e.counter),
                "start": str(e.start),
            },
        )
        for e in events
    ]


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def expected_episodes(flags: Flags) -> list[tuple[str, str, str]]:
    """The reference's flags as episodes (rule, subject, start), after the accepted readings."""
    looped = {(tool, run, end) for tool, run, end, cond in flags.loop_condition if cond}
    rollbacks = []
    for tool, end, repeat, run in flags.rollback_info:
        if repeat and run in flags.open_runs:
            continue  # rule 2: a run still open is not reported yet
        if repeat and any(t == tool and r == run and e >= end for t, r, e in looped):
            continue  # rule 1: the run's loop-out episode reports it
        rollbacks.append((tool, end))
    out = [("counter_jump", tool, iso(end)) for tool, end in flags.jumps]
    out += [("counter_rollback", tool, iso(end)) for tool, end in rollbacks]
    out += [("tool_life_short", tool, iso(end)) for tool, end in flags.short_lives]
    out += [("pallet_looped_out", pallet, iso(end)) for pallet, end in flags.loop_outs]
    return sorted(out)


def engine_run(
    machine: str, events: list[Event]
) -> tuple[list[tuple[str, str, str]], float | None]:
    """The engine's episodes (rule, subject, start) and the fastest cycle it learned."""
    result = replay(PROGRAM, to_signals(machine, events))
    rows = sorted((r["rule"], r["subject"], r["started_at"]) for r in result.ledger.rows())
    m = result.engine.machines.get(machine)
    return rows, (m.fastest_cycle.get(m.program) if m is not None else None)


@pytest.mark.timeout(3600 if SOAK else 300)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(streams())
def test_the_engine_flags_what_the_plants_formulas_flag(
    stream: tuple[MachineSetup, list[Event]],
) -> None:
    setup, events = stream
    events = sorted(events, key=lambda e: e.end)
    flags = evaluate(events, setup.tools, ZONE, SHIFTS)
    episodes, fastest = engine_run(setup.id, events)
    assert fastest == flags.fastest
    assert episodes == expected_episodes(flags)
