"""The plants' four rules written plainly from DOMAIN.md section 3, for differential tests.

Nothing here comes from ``rules/``: it reads a list of machining events of one machine in
order and says which events each formula flags, with the plants' words:

- cycle_time = seconds since the last start on the same pallet (of the same tool: each
  tool assembly reports its own start); fastest_cycle_time = the smallest non-zero
  cycle_time seen so far on the machine (one program here), this event's included;
- **counter jump**: current > last_same_pallet + 5 x (cycle_time / fastest_cycle_time)
  x increment x pallets_running_tool;
- **counter rolled back**: no jump, but current != last_other_pallet + increment;
- **pallet looped out**: for a tool run by more than one pallet, among the last 5
  machining events since shift start the number of distinct pallets differs from
  pallets_per_tool;
- **tool not reaching tool life**: a tool changed (counter reset to 0, increment or
  2 x increment) before reaching its standard tool life.

Where the formulas leave something open, the reading chosen is written next to the code
(``READING:``); ``tests/rules/test_plant_reference.py`` lists the readings in which the
engine is allowed to differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

JUMP_FACTOR = 5
LOOP_EVENTS = 5


@dataclass(frozen=True)
class Tool:
    """A line of the plant's tool list."""

    name: str
    life: int
    increment: int
    pallets: int


@dataclass(frozen=True)
class Event:
    """One END_MACHINING event (InsAssemblyMachiningHistory)."""

    tool: str
    pallet: str
    counter: int
    start: int  # Start_Time, Unix seconds
    end: int  # End_Time, Unix seconds


@dataclass
class Flags:
    """What each formula flagged: (tool, event end time); loop-outs as opened episodes."""

    jumps: list[tuple[str, int]] = field(default_factory=list)
    rollbacks: list[tuple[str, int]] = field(default_factory=list)
    short_lives: list[tuple[str, int]] = field(default_factory=list)
    #: (missing pallet, end time of the event that opened the episode)
    loop_outs: list[tuple[str, int]] = field(default_factory=list)
    #: per rolled-back event: (tool, end, is a repeat, run id of the tool's pallet run)
    rollback_info: list[tuple[str, int, bool, int]] = field(default_factory=list)
    #: per event of a tool: (tool, run id, event end, whether the loop-out condition held)
    loop_condition: list[tuple[str, int, int, bool]] = field(default_factory=list)
    #: run ids still open at the end of the stream
    open_runs: set[int] = field(default_factory=set)
    fastest: int | None = None


def shift_start(ts: int, zone: str, starts: list[str]) -> int:
    """The latest shift start (HH:MM in the plant's zone) at or before ``ts``."""
    tz = ZoneInfo(zone)
    day = datetime.fromtimestamp(ts, tz).date()
    best = None
    for d in (day - timedelta(days=1), day):
        for s in starts:
            at = datetime(d.year, d.month, d.day, int(s[:2]), int(s[3:]), tzinfo=tz)
            t = int(at.timestamp())
            if t <= ts and (best is None or t > best):
                best = t
    assert best is not None
    return best


def evaluate(events: list[Event], tools: dict[str, Tool], zone: str, shifts: list[str]) -> Flags:
    """Run the four formulas over one machine's events, in order."""
    out = Flags()
    last_start: dict[tuple[str, str], int] = {}  # (tool, pallet) -> last start there
    fastest: int | None = None
    # READING: readings belong to a tool life. After a change the old life's readings are
    # not compared with the new one's (neither as last_same_pallet nor last_other_pallet).
    life_readings: dict[str, dict[str, int]] = {t: {} for t in tools}  # tool -> pallet -> counter
    previous: dict[str, int] = {}  # tool -> its last reading, any pallet
    previous_pallet: dict[str, str | None] = {t: None for t in tools}  # in this life
    history: dict[str, list[tuple[str, int]]] = {t: [] for t in tools}  # (pallet, shift)
    seen_pallets: dict[str, list[str]] = {t: [] for t in tools}
    showing: dict[str, set[str]] = {}  # missing pallet -> tools whose last 5 show it
    run_id: dict[str, int] = {}
    run_pallet: dict[str, str] = {}  # tool -> the pallet of its current run
    next_run = 0

    for ev in events:
        spec = tools[ev.tool]
        inc = spec.increment
        pallet_key = (ev.tool, ev.pallet)

        # Fastest cycle time: smallest non-zero cycle time so far, this event's included.
        if pallet_key in last_start:
            cycle = ev.start - last_start[pallet_key]
            if cycle > 0 and (fastest is None or cycle < fastest):
                fastest = cycle

        # Tool change: a reading of 0, inc or 2 x inc below the previous one.
        # READING: the previous reading must be above 2 x inc, or the first counts of a
        # fresh tool (0, inc, 2 x inc) would each read as another change.
        prev = previous.get(ev.tool)
        changed = prev is not None and prev > 2 * inc and ev.counter in (0, inc, 2 * inc)
        if changed:
            assert prev is not None
            if prev < spec.life:
                out.short_lives.append((ev.tool, ev.end))
            life_readings[ev.tool] = {}
            previous_pallet[ev.tool] = None

        readings = life_readings[ev.tool]
        repeat = spec.pallets > 1 and previous_pallet[ev.tool] == ev.pallet
        # READING: a run of one pallet goes on across a tool change (the pallets do not
        # change with the tool): it ends when another pallet comes.
        goes_on = spec.pallets > 1 and run_pallet.get(ev.tool) == ev.pallet
        run_pallet[ev.tool] = ev.pallet
        if not (repeat or goes_on):
            out.open_runs.discard(run_id.get(ev.tool, -1))
            next_run += 1
            run_id[ev.tool] = next_run
        out.open_runs.add(run_id[ev.tool])

        if not changed:
            # Counter jump (needs a reading on the same pallet in this life).
            jump = False
            same = readings.get(ev.pallet)
            if same is not None and fastest:
                cycle = ev.start - last_start[pallet_key]
                limit = same + JUMP_FACTOR * (cycle / fastest) * inc * spec.pallets
                jump = cycle > 0 and ev.counter > limit
                if jump:
                    out.jumps.append((ev.tool, ev.end))
            # Counter rolled back: no jump, but not last_other_pallet + increment.
            # READING: a tool run by one pallet continues from its own last reading.
            if spec.pallets > 1:
                others = [p for p in readings if p != ev.pallet]
                other = readings[others[0]] if others else None
            else:
                other = readings.get(ev.pallet)
            if not jump and other is not None and ev.counter != other + inc:
                out.rollbacks.append((ev.tool, ev.end))
                out.rollback_info.append((ev.tool, ev.end, repeat, run_id[ev.tool]))

        # Pallet looped out.
        shift = shift_start(ev.end, zone, shifts)
        history[ev.tool].append((ev.pallet, shift))
        if spec.pallets > 1:
            window = [p for p, s in history[ev.tool] if s == shift]
            # READING: with fewer than 5 events since the shift started there are no "last
            # 5 events": nothing is decided, an episode already open stays open.
            if len(window) >= LOOP_EVENTS:
                last5 = window[-LOOP_EVENTS:]
                looped = len(set(last5)) != spec.pallets
                out.loop_condition.append((ev.tool, run_id[ev.tool], ev.end, looped))
                missing = ""
                if looped:
                    # The pallet the tool ran on before that is not among the last 5; ""
                    # when it never ran on another (the start of a stream).
                    absent = [p for p in seen_pallets[ev.tool] if p not in last5]
                    missing = absent[0] if absent else ""
                for p in list(showing):
                    if ev.tool in showing[p] and (not looped or p != missing):
                        showing[p].discard(ev.tool)
                        if not showing[p]:
                            del showing[p]
                if looped and ev.tool not in showing.get(missing, set()):
                    if missing not in showing:
                        out.loop_outs.append((missing, ev.end))
                    showing.setdefault(missing, set()).add(ev.tool)
            else:
                out.loop_condition.append((ev.tool, run_id[ev.tool], ev.end, False))
        else:
            out.loop_condition.append((ev.tool, run_id[ev.tool], ev.end, False))

        if ev.pallet not in seen_pallets[ev.tool]:
            seen_pallets[ev.tool].append(ev.pallet)
        readings[ev.pallet] = ev.counter
        previous[ev.tool] = ev.counter
        previous_pallet[ev.tool] = ev.pallet
        last_start[pallet_key] = ev.start

    out.fastest = fastest
    return out
