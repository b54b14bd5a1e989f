"""Derived events: cycles, tool changes and pallet changes out of raw signals.

Machines say the same thing in different ways: one reports a cycle time, another only a
part counter, a third tool-tracker events with start and end; one reports tool changes,
another only a counter that falls back to 0. :class:`Deriver` turns each machine's raw
signals, according to its configured ``cycle_source``, into one canonical stream of
``cycle_time``, ``tool_change`` and ``pallet_change`` signals, so every rule listens to one
name whatever the controller. It also keeps the machine's facts current (run state, mode,
program, feed override, active tool, pallet, last alarm, tool counters) and learns each
program's fastest cycle time.

Tool changes are recognized from an explicit ``tool_change`` signal, a tool counter
falling back to 0, the increment or twice the increment (DOMAIN.md section 3), or a
``tool_number`` signal with a subject (a pocket) whose value (the tool in it) changes. A
``tool_number`` without a subject is the tool in the spindle: it attributes spindle load.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.config.machines import Machine
from core.config.rules import MachineRulesSpec, RulesConfig
from core.model import Signal
from rules.state import PALLET_CHANGES, MachineState, ToolState

#: Signals whose raw form the deriver replaces with its canonical one.
OWNED = frozenset({"cycle_time", "tool_change", "pallet_change"})


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


def tool_id(value: Any) -> str:
    """A tool number as the tool-life signals name it: ``3`` → ``T3``, ``"T3"`` stays."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"T{int(value)}"
    return str(value)


#: What :meth:`Deriver.before` returns for a machining event delivered twice: no signal
#: for the rules, and no history update (``Engine`` checks it by identity).
REDELIVERED: list[Signal] = []


def event_start(sig: Signal) -> float:
    """When a machining event's tool began cutting: its ``start``, else the event's time."""
    start = _num(sig.attrs.get("start"))
    return sig.source_ts if start is None else start


class ShiftClock:
    """Start of the shift a timestamp falls in, from HH:MM starts in the plant's zone."""

    def __init__(self, timezone: str, starts: list[str]) -> None:
        self.zone = ZoneInfo(timezone)
        self.starts = sorted((int(s[:2]), int(s[3:])) for s in starts)
        self._lo = 0.0
        self._hi = -1.0

    def start_of(self, ts: float) -> float:
        if self._lo <= ts < self._hi:
            return self._lo
        local = datetime.fromtimestamp(ts, self.zone)
        candidates = []
        for days in (-1, 0, 1):
            day = (local + timedelta(days=days)).date()
            for hour, minute in self.starts:
                at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)
                candidates.append(at.timestamp())
        candidates.sort()
        lo = max(c for c in candidates if c <= ts)
        hi = min(c for c in candidates if c > ts)
        self._lo, self._hi = lo, hi
        return lo


class Facts:
    """What rules may ask about machines and tools: names, lives, increments, cycles."""

    def __init__(self, rules: RulesConfig, machines: list[Machine], timezone: str) -> None:
        self.cfg = rules
        self.machines = {m.id: m for m in machines}
        self._specs: dict[str, MachineRulesSpec] = {}
        self.shifts = ShiftClock(timezone, rules.shifts)

    def spec(self, machine_id: str) -> MachineRulesSpec:
        spec = self._specs.get(machine_id)
        if spec is None:
            spec = self._specs[machine_id] = self.cfg.machine_spec(machine_id)
        return spec

    def machine_name(self, machine_id: str) -> str:
        machine = self.machines.get(machine_id)
        return machine.display_name if machine is not None else machine_id

    def tool_name(self, machine_id: str, tool: str) -> str:
        spec = self.spec(machine_id).tools.get(tool)
        if spec is not None and spec.name:
            return spec.name
        if tool[:1] == "T" and tool[1:].isdigit():
            return f"Tool {tool[1:]}"
        return f"Tool {tool}"

    def life(self, machine_id: str, tool: str, state: ToolState | None) -> int | None:
        """Standard tool life: the plant's tool list, else the controller's limit."""
        spec = self.spec(machine_id).tools.get(tool)
        if spec is not None and spec.life is not None:
            return spec.life
        return state.limit if state is not None else None

    def increment(self, machine_id: str, tool: str, state: ToolState | None) -> int:
        spec = self.spec(machine_id).tools.get(tool)
        if spec is not None and spec.increment is not None:
            return spec.increment
        if state is not None and state.increment:
            return state.increment
        return 1

    def pallets(self, machine_id: str, tool: str, state: ToolState) -> int:
        """Pallets running the tool: configured, else the most pallets seen running it."""
        spec = self.spec(machine_id).tools.get(tool)
        if spec is not None and spec.pallets is not None:
            return spec.pallets
        return max(1, len(state.pallets_seen))

    def fastest_cycle(self, m: MachineState) -> float | None:
        """The plants' ``fastest_cycle_time`` of the current program: configured, else learned.

        Learned as DOMAIN.md section 3 defines it: the smallest non-zero time from a
        machining event's start to the previous start of the same tool on the same pallet
        (see :meth:`Deriver._learn_cycle`), per machine and program (part operation).
        """
        fixed = self.spec(m.id).fastest_cycle_time_s
        if fixed is not None:
            return fixed
        return m.fastest_cycle.get(m.program)

    def fastest(self, m: MachineState) -> float | None:
        """The forecast's fastest cycle: the plants' one, else the fastest derived cycle.

        A machine without machining events (tool-life counters only) has no start-to-start
        cycle; its derived ``cycle_time`` signals stand in.
        """
        return self.fastest_cycle(m) or m.fastest.get(m.program)


class Deriver:
    """Keeps machine facts current and emits canonical derived signals."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.min_cycle = facts.cfg.min_cycle_time_s

    def before(self, m: MachineState, sig: Signal) -> list[Signal] | None:
        """Update facts from ``sig``; the signals rules should see.

        ``None`` means "just ``sig``" (the common case, no allocation); a list replaces it
        (derived signals, with or without ``sig`` itself).
        """
        name = sig.name
        handler = _HANDLERS.get(name)
        if handler is None:
            return None
        return handler(self, m, sig)

    # --- facts --------------------------------------------------------------------------

    def _run_state(self, m: MachineState, sig: Signal) -> list[Signal] | None:
        state = str(sig.value)
        if state == m.run_state:
            return None
        was_executing = m.run_state == "executing"
        m.run_state = state
        m.run_since = sig.source_ts
        if self.facts.spec(m.id).cycle_source == "run_state":
            if state == "executing":
                m.cycle_start = sig.source_ts
            elif was_executing and m.cycle_start is not None:
                cycle = self._cycle(m, sig, sig.source_ts - m.cycle_start)
                m.cycle_start = None
                return [sig, cycle] if cycle is not None else None
        return None

    def _mode(self, m: MachineState, sig: Signal) -> None:
        m.mode = str(sig.value).lower()

    def _program(self, m: MachineState, sig: Signal) -> None:
        m.program = str(sig.value)

    def _feed(self, m: MachineState, sig: Signal) -> None:
        value = _num(sig.value)
        if value is not None and value > 0:
            m.feed = value

    def _alarm(self, m: MachineState, sig: Signal) -> None:
        code = str(sig.value)
        if sig.attrs.get("active", "true") != "false":
            # The fourth item says the alarm still stands: a controller that stops on an
            # alarm often reports a plain "stopped", and the board must say "down".
            m.last_alarm = [code, sig.attrs.get("text", ""), sig.source_ts, True]
        elif m.last_alarm is not None and m.last_alarm[0] == code:
            m.last_alarm = [*m.last_alarm[:3], False]

    def _pallet(self, m: MachineState, sig: Signal) -> list[Signal]:
        pallet = str(sig.value)
        out: list[Signal] = [sig] if sig.name == "pallet_id" else []
        if pallet != m.pallet:
            if m.pallet:
                out.append(self._derived(sig, "pallet_change", pallet, "", previous=m.pallet))
                m.pallet_changes.append([round(sig.source_ts, 3), pallet])
                if len(m.pallet_changes) > PALLET_CHANGES:
                    del m.pallet_changes[0]
            m.pallet = pallet
        return out

    def _tool_number(self, m: MachineState, sig: Signal) -> list[Signal] | None:
        tool = tool_id(sig.value)
        if not sig.subject:
            m.active_tool = tool
            return None
        # A pocket whose tool changed: the tool in it was replaced.
        state = m.tool(sig.subject)
        key = "_pocket"
        previous = m.rules.get(key, {}).get(sig.subject)
        m.rules.setdefault(key, {})[sig.subject] = tool
        if previous is None or previous == tool:
            return None
        return [sig, self._change(m, sig, sig.subject, state, "tool_number")]

    # --- cycles -------------------------------------------------------------------------

    def _cycle(self, m: MachineState, sig: Signal, duration: float) -> Signal | None:
        if duration <= 0:
            return None
        if duration >= self.min_cycle:
            best = m.fastest.get(m.program)
            if best is None or duration < best:
                m.fastest[m.program] = duration
        m.last_cycle_end = sig.source_ts
        return self._derived(sig, "cycle_time", round(duration, 3), "", program=m.program)

    def _part_count(self, m: MachineState, sig: Signal) -> list[Signal] | None:
        count = _num(sig.value)
        if count is None:
            return None
        previous = m.part_count
        m.part_count = count
        if previous is None or count <= previous:
            return None  # first reading, or a counter reset: no cycle edge
        edge_before = m.part_ts
        m.part_ts = sig.source_ts
        if edge_before is None or self.facts.spec(m.id).cycle_source != "part_count":
            return None
        cycle = self._cycle(m, sig, sig.source_ts - edge_before)
        return [sig, cycle] if cycle is not None else None

    def _cycle_time(self, m: MachineState, sig: Signal) -> list[Signal]:
        if self.facts.spec(m.id).cycle_source != "cycle_time":
            return []
        value = _num(sig.value)
        cycle = self._cycle(m, sig, value) if value is not None else None
        return [cycle] if cycle is not None else []

    def _cycle_edge(self, m: MachineState, sig: Signal) -> list[Signal] | None:
        if self.facts.spec(m.id).cycle_source != "cycle_edges":
            return None
        if sig.name == "cycle_start":
            m.cycle_start = sig.source_ts
            return None
        if m.cycle_start is None:
            return None
        cycle = self._cycle(m, sig, sig.source_ts - m.cycle_start)
        m.cycle_start = None
        return [sig, cycle] if cycle is not None else None

    # --- tools --------------------------------------------------------------------------

    def _derived(self, sig: Signal, name: str, value: Any, subject: str, **attrs: str) -> Signal:
        return Signal(
            machine=sig.machine,
            name=name,
            value=value,
            quality=sig.quality,
            source_ts=sig.source_ts,
            receive_ts=sig.receive_ts,
            subject=subject,
            attrs=attrs,
        )

    def _change(
        self, m: MachineState, sig: Signal, tool: str, state: ToolState, reason: str
    ) -> Signal:
        reached = state.counter
        life = self.facts.life(m.id, tool, state)
        state.counter = 0.0
        state.changes += 1
        state.life_start = sig.source_ts
        state.reset_history()
        return self._derived(
            sig,
            "tool_change",
            reached,
            tool,
            reason=reason,
            life="" if life is None else str(life),
        )

    def _counter(self, m: MachineState, sig: Signal, tool: str, counter: float) -> list[Signal]:
        state = m.tool(tool)
        if sig.name == "tool_life":
            limit = _num(sig.attrs.get("limit"))
            if limit is not None and limit > 0:
                state.limit = int(limit)
        inc_attr = _num(sig.attrs.get("increment"))
        if inc_attr is not None and inc_attr > 0:
            state.increment = int(inc_attr)
        out = [sig]
        previous = state.counter
        if state.life_start is None:
            state.life_start = sig.source_ts
        if previous is not None and counter < previous:
            inc = self.facts.increment(m.id, tool, state)
            if previous > 2 * inc and counter in (0, inc, 2 * inc):
                out.insert(0, self._change(m, sig, tool, state, "counter_reset"))
        state.counter = counter
        return out

    def _tool_life(self, m: MachineState, sig: Signal) -> list[Signal] | None:
        counter = _num(sig.value)
        if counter is None or not sig.subject:
            return None
        return self._counter(m, sig, sig.subject, counter)

    def _machining(self, m: MachineState, sig: Signal) -> list[Signal] | None:
        attrs = sig.attrs
        tool = sig.subject or attrs.get("tool", "")
        counter = _num(attrs["counter"]) if "counter" in attrs else _num(sig.value)
        state = m.tools.get(tool)
        if state is not None and state.last_event == [
            attrs.get("pallet", ""),
            counter,
            event_start(sig),
        ]:
            # The tool's last event again: a redelivery (MQTT is at least once; a collector
            # killed before its acknowledgement writes the message twice), not a second use;
            # also when its tool change signal came in between (``ToolState.last_event``).
            return REDELIVERED
        if state is not None and attrs.get("resync") == "1":
            # The collector says events of this tool before this one may be lost (the
            # first datagram after its start: UDP has no acknowledgement, decision 0470):
            # which pallets ran last is unknown (the loop-out window and the repeat start
            # again here), and counter_rollback does not judge this reading. The jump test
            # still does: its limit is the time since the pallet's last reading.
            state.window = []
            state.prev = None
        out: list[Signal] = [sig]
        if attrs.get("cmd") == "50":
            m.cycle_start = sig.source_ts
            return out
        if self.facts.spec(m.id).cycle_source == "machining_event":
            cycle = self._cut(m, sig, tool)
            if cycle is not None:
                out.append(cycle)
        if not tool or counter is None:
            return out
        self._learn_cycle(m, sig, tool)
        counted = self._counter(m, sig, tool, counter)
        return counted + out[1:]

    def _cut(self, m: MachineState, sig: Signal, tool: str) -> Signal | None:
        """One cycle per cut: the span of its tools' events, known when the next cut begins.

        Each tool assembly reports its own start and end inside the pallet's cut (Okuma's
        set-60 commands), so no single event spans the cut. A cut is the run of events on
        one pallet in which no tool reports twice; its cycle is its first start to its
        last end, derived at the first event of the next cut.
        """
        start = _num(sig.attrs.get("start"))
        if start is None:
            start = m.cycle_start if m.cycle_start is not None else sig.source_ts
        end = _num(sig.attrs.get("end"))
        end = sig.source_ts if end is None else end
        pallet = sig.attrs.get("pallet", "")
        cut = m.rules.get("_cut")  # [pallet, [tools], first start, last end]
        if cut is not None and cut[0] == pallet and tool not in cut[1]:
            cut[1].append(tool)
            cut[3] = max(cut[3], end)
            return None
        m.rules["_cut"] = [pallet, [tool], start, end]
        m.cycle_start = None
        if cut is None:
            return None
        return self._cycle(m, sig, cut[3] - cut[2])

    def _learn_cycle(self, m: MachineState, sig: Signal, tool: str) -> None:
        """The plants' cycle time of this event; the program's fastest when it is faster."""
        state = m.tools.get(tool)
        if state is None:
            return
        last = state.starts.get(sig.attrs.get("pallet", ""))
        if last is None:
            return
        cycle = event_start(sig) - last
        if cycle >= self.min_cycle:  # shorter: a glitch (or a zero), not a cycle
            best = m.fastest_cycle.get(m.program)
            if best is None or cycle < best:
                m.fastest_cycle[m.program] = cycle

    def _tool_change(self, m: MachineState, sig: Signal) -> list[Signal]:
        tool = sig.subject or tool_id(sig.value)
        state = m.tool(tool)
        key = [sig.source_ts, sig.value]
        if state.last_change == key:
            return REDELIVERED  # the same change signal again (see _machining)
        state.last_change = key
        reached = _num(sig.value) if sig.subject else None
        if reached is not None:
            state.counter = reached
        return [self._change(m, sig, tool, state, sig.attrs.get("reason", "signal") or "signal")]

    def after(self, m: MachineState, sig: Signal) -> None:
        """After rules saw a machining event: it becomes the tool's history."""
        attrs = sig.attrs
        if attrs.get("cmd") == "50":
            return
        tool = sig.subject or attrs.get("tool", "")
        counter = _num(attrs["counter"]) if "counter" in attrs else _num(sig.value)
        if not tool or counter is None:
            return
        state = m.tool(tool)
        pallet = attrs.get("pallet", "")
        start = event_start(sig)
        state.by_pallet[pallet] = [counter, start]
        state.starts[pallet] = start
        state.prev = [pallet, counter, start]
        state.last_event = [pallet, counter, start]
        if pallet not in state.pallets_seen and len(state.pallets_seen) < 16:
            state.pallets_seen.append(pallet)
        shift = self.facts.shifts.start_of(sig.source_ts)
        if shift != state.window_shift:
            state.window_shift = shift
            state.window = []
        state.window.append(pallet)
        if len(state.window) > 50:
            del state.window[0]


_Handler = Callable[[Deriver, MachineState, Signal], "list[Signal] | None"]
_HANDLERS: dict[str, _Handler] = {
    "run_state": Deriver._run_state,
    "operation_mode": Deriver._mode,
    "program": Deriver._program,
    "feed_override": Deriver._feed,
    "alarm": Deriver._alarm,
    "pallet_id": Deriver._pallet,
    "pallet_change": Deriver._pallet,
    "tool_number": Deriver._tool_number,
    "part_count": Deriver._part_count,
    "cycle_time": Deriver._cycle_time,
    "cycle_start": Deriver._cycle_edge,
    "cycle_end": Deriver._cycle_edge,
    "tool_life": Deriver._tool_life,
    "machining_event": Deriver._machining,
    "tool_change": Deriver._tool_change,
}
#: Signals the deriver reads: the engine calls :meth:`Deriver.before` only for these (most
#: signals, spindle load first, are not; the call alone was a measurable share).
DERIVES = frozenset(_HANDLERS)
