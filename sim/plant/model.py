"""A deterministic model of a machining plant, usable without any server.

The OPC UA server and the MQTT publisher of ``repsys sim plant`` are fed by this model,
and the rules engine's tests feed its output straight into rules: the same seed and
scenario always give the same signals, stamped with simulated source timestamps.

API::

    plant = Plant([MachineSpec("cnc103", tools=(ToolSpec(1, life=198),))],
                  Scenario(faults=(Fault(120, FaultKind.PREMATURE_TOOL_CHANGE,
                                         machine="cnc103", tool="T1"),)),
                  seed=7)
    signals = plant.advance(60.0)         # list[core.model.Signal], ordered by source_ts
    plant.take_transport_faults()         # silent subscription / restart / outage now due
    plant.ledger                          # ground truth: every fault injected (ledger.py)

How a machine behaves: it alternates pallets (load ``load_time_s``, then cut
``cycle_time_s`` with Gaussian noise). The cut is shared by the tools used on that pallet,
in order, one slot each; a tool cuts ``tool_share`` of its slot (the rest is the tool
change and rapid moves), as each tool assembly of an Okuma reports its own start and end
(set 60). When a tool ends it advances its counter by its ``increment`` (a tool shared
by two pallets counts on both) and reports a ``machining_event`` (subject ``T<n>``,
value = counter, attrs ``pallet``, ``tool``, ``counter``, ``increment``, ``start``,
``end`` of that tool, ``cmd``) and its ``tool_life`` (attrs ``limit``, ``warning``,
``increment``, ``counting``); a tool reaching its life is changed (``tool_change``,
counter back to 0). A machine that goes down in the middle of a cut finishes the cut's
remaining tools on the same pallet when it recovers. Spindle load is sampled every
``sample_interval_s`` and rises with the wear of the tools in the cut. Signals emitted:
run_state, operation_mode, program, part_count, part_count_good, part_count_bad,
cycle_start, cycle_time, pallet_id, pallet_change, tool_number, tool_life, tool_change,
machining_event, spindle_load, feed_override, alarm (value = code; attrs text, severity,
active).
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.model import Signal, Value
from sim.plant.ledger import Injected
from sim.plant.scenario import Fault, FaultKind, Scenario

#: 2023-11-14 22:13:20 UTC: a fixed start so that simulated timestamps are reproducible.
DEFAULT_START_TS = 1_700_000_000.0

#: Alarm codes the simulated controllers raise (value of the ``alarm`` signal).
ALARM_SPINDLE_DRIVE = 1001
ALARM_PALLET_CHANGER = 2001
#: A warning that does not stop the machine (the ``alarm_burst`` fault raises it).
ALARM_COOLANT_LOW = 3001


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool of a machine: ``T<number>``, counting up to ``life`` by ``increment``."""

    number: int
    life: int = 198
    warning: int = 0  # 0: 90 % of life
    increment: int = 1
    pallets: tuple[int, ...] = ()  # pallets this tool cuts on; () = every pallet
    start: int = 0  # counter at simulated time 0

    @property
    def name(self) -> str:
        return f"T{self.number}"

    @property
    def warning_at(self) -> int:
        return self.warning or int(self.life * 0.9)


def _default_tools() -> tuple[ToolSpec, ...]:
    return (ToolSpec(1, life=198), ToolSpec(2, life=348), ToolSpec(3, life=798, increment=2))


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """One simulated machine (its id must match a configured machine)."""

    id: str
    pallets: int = 2
    cycle_time_s: float = 30.0
    cycle_noise: float = 0.03  # relative standard deviation of the cutting time
    load_time_s: float = 5.0
    program: str = "O1000"
    parts_per_cycle: int = 1
    tools: tuple[ToolSpec, ...] = field(default_factory=_default_tools)
    spindle_base: float = 35.0  # percent with a fresh tool
    spindle_wear: float = 25.0  # percent added at the end of the tool's life
    sample_interval_s: float = 1.0
    tool_share: float = 0.8  # share of its slot of the cut a tool spends cutting

    def __post_init__(self) -> None:
        if not 0.0 < self.tool_share <= 1.0:
            raise ValueError("tool_share must be in (0, 1]")

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    def tools_on(self, pallet: int) -> list[ToolSpec]:
        return [t for t in self.tools if not t.pallets or pallet in t.pallets]


@dataclass
class _Drift:
    rate: float
    until: float
    cycles: int = 0
    entry: Injected | None = None


@dataclass
class _Spell:
    """A fault that holds for a while: scrap (``rate`` = bad share) or slow cycles."""

    rate: float
    until: float
    entry: Injected
    due: float = 0.0  # scrap: bad parts owed (a part is bad each time this reaches 1)


@dataclass(frozen=True, slots=True)
class _Part:
    """One raise of an alarm burst or one stop of micro-stops, scheduled by the plant."""

    fault: Fault
    entry: Injected
    index: int

    @property
    def last(self) -> bool:
        return self.index == self.fault.effective_amount - 1


@dataclass
class _Overrun:
    """A tool not changed at its life: ``left`` more uses before it is."""

    left: int
    entry: Injected


class _Machine:
    """The state of one machine between events."""

    def __init__(self, spec: MachineSpec, rng: random.Random, start_ts: float) -> None:
        self.spec = spec
        self.rng = rng
        self.start_ts = start_ts
        self.counters = {t.name: t.start for t in spec.tools}
        self.part_count = 0
        self.good = 0
        self.bad = 0
        self.pallet = 1
        self.phase = "load"
        self.phase_started = 0.0
        self.phase_ends = 0.0  # when the load or cut under way ends (a pause defers it)
        self.paused_until = -1.0
        self.cut_started = 0.0
        # The tools of the cut not yet ended: (tool, start, end) in simulated seconds.
        self.plan: list[tuple[ToolSpec, float, float]] = []
        self.resume: list[ToolSpec] = []  # a cut's tools left when the machine went down
        self.generation = 0  # bumped when a fault cancels the scheduled phase change
        self.down_until = -1.0
        self.alarm = 0
        self.drift: dict[str, _Drift] = {}
        self.jump: dict[str, int] = {}
        self.premature: set[str] = set()
        self.looped_out: dict[int, float] = {}
        self.scrap: _Spell | None = None
        self.slow: _Spell | None = None
        self.overload: _Spell | None = None
        self.overrun: dict[str, _Overrun] = {}
        self.out: list[Signal] = []
        # Ground truth of faults injected but not yet shown in the signals (per tool), and
        # of stops not yet recovered: their times are set when the machine acts them out.
        self.truth_tool: dict[str, list[Injected]] = {}
        self.truth_down: list[Injected] = []

    def emit(self, t: float, name: str, value: Value, subject: str = "", **attrs: str) -> None:
        ts = self.start_ts + t
        self.out.append(
            Signal(
                machine=self.spec.id,
                name=name,
                value=value,
                source_ts=ts,
                receive_ts=ts,
                subject=subject,
                attrs=attrs,
            )
        )

    def tool_life(self, t: float, tool: ToolSpec) -> None:
        self.emit(
            t,
            "tool_life",
            self.counters[tool.name],
            tool.name,
            limit=str(tool.life),
            warning=str(tool.warning_at),
            increment=str(tool.increment),
            counting="up",
        )

    def snapshot(self, t: float) -> None:
        self.emit(t, "run_state", "executing")
        self.emit(t, "operation_mode", "processing")
        self.emit(t, "program", self.spec.program)
        self.emit(t, "feed_override", 100.0)
        self.emit(t, "part_count", self.part_count)
        self.emit(t, "part_count_good", self.good)
        self.emit(t, "part_count_bad", self.bad)
        self.emit(t, "pallet_id", self.pallet)
        for tool in self.spec.tools:
            self.tool_life(t, tool)

    # --- phases --------------------------------------------------------------------

    def next_pallet(self, t: float) -> int:
        n = self.spec.pallets
        candidates = [(self.pallet + i) % n + 1 for i in range(n)]
        for p in candidates:
            if self.looped_out.get(p, -1.0) <= t:
                return p
        return self.pallet  # every pallet looped out: keep running the one loaded

    def start_load(self, t: float) -> float:
        new = self.next_pallet(t)
        if new != self.pallet:
            self.emit(t, "pallet_change", new, previous=str(self.pallet))
            self.pallet = new
            self.emit(t, "pallet_id", new)
        self.phase, self.phase_started = "load", t
        self.phase_ends = t + self.spec.load_time_s
        return self.phase_ends

    def start_cut(self, t: float) -> float:
        """Begin a cut; plans each tool's start and end in it. Returns when it ends."""
        self.phase = "cut"
        self.cut_started = t
        self.emit(t, "cycle_start", self.pallet)
        everyone = self.spec.tools_on(self.pallet)
        tools, self.resume = (self.resume or everyone), []
        factor = 1.0 + self.rng.gauss(0.0, self.spec.cycle_noise)
        for name, drift in self.drift.items():
            if drift.until > t and any(x.name == name for x in tools):
                factor += 0.002 * drift.cycles
        if self.slow is not None:
            if self.slow.until > t:
                factor += self.slow.rate
                if self.slow.entry.start_ts is None:
                    self.slow.entry.start_ts = self.start_ts + t
            else:
                self.slow = None
        # A resumed cut only has its remaining tools' share of the cycle to do.
        share = len(tools) / len(everyone) if everyone else 1.0
        duration = max(1.0, self.spec.cycle_time_s * factor * share)
        slot = duration / max(1, len(tools))
        end = t + duration
        # min(): with a share of 1 the last tool ends with the cut, not a rounding later.
        self.plan = [
            (tool, t + i * slot, min(end, t + i * slot + slot * self.spec.tool_share))
            for i, tool in enumerate(tools)
        ]
        self.phase_ends = end
        return end

    def end_tool(self, t: float) -> None:
        """The next tool of the cut ends at ``t``: it counts and reports its machining event."""
        tool, start, _ = self.plan.pop(0)
        name = tool.name
        shift = self.jump.pop(name, 0)
        landing = self.counters[name] + tool.increment + shift
        waits = shift < 0 and landing <= 2 * tool.increment and name not in self.premature
        if waits:
            # A roll-back landing on 0, the increment or twice it is what the plants' rule
            # calls a tool change (DOMAIN.md): it waits for a reading it can show on, and so
            # does its ground truth (a fresh tool in a short run found this).
            self.jump[name] = shift
            shift = 0
        for entry in self.truth_tool.pop(name, []):
            if waits and entry.kind == FaultKind.COUNTER_ROLLBACK.value:
                self.truth_tool.setdefault(name, []).append(entry)
                continue
            entry.start_ts = entry.end_ts = self.start_ts + t
        if name in self.premature:
            self.premature.discard(name)
            self.emit(t, "tool_change", self.counters[name], name, reason="premature")
            self.counters[name] = 0
            self.end_wear(name, t)
        self.counters[name] += tool.increment + shift
        self.counters[name] = max(0, self.counters[name])
        if name in self.drift and self.drift[name].until > t:
            self.drift[name].cycles += 1
        self.emit(t, "tool_number", tool.number)
        self.emit(
            t,
            "machining_event",
            self.counters[name],
            name,
            pallet=str(self.pallet),
            tool=name,
            counter=str(self.counters[name]),
            increment=str(tool.increment),
            start=repr(self.start_ts + start),
            end=repr(self.start_ts + t),
            cmd="51",
        )
        self.tool_life(t, tool)
        if self.counters[name] >= tool.life and not self.overrunning(t, tool):
            self.emit(t, "tool_change", self.counters[name], name, reason="life")
            self.counters[name] = 0
            self.end_wear(name, t)
            self.tool_life(t, tool)

    def overrunning(self, t: float, tool: ToolSpec) -> bool:
        """Whether a tool at or past its life is kept in (``tool_not_changed``).

        Its ground truth shows with the first reading past the life (a use that started at
        the life) and ends when the tool is changed at last.
        """
        over = self.overrun.get(tool.name)
        if over is None:
            return False
        now = self.start_ts + t
        if self.counters[tool.name] > tool.life and over.entry.start_ts is None:
            over.entry.start_ts = now
        if over.left > 0:
            over.left -= 1
            return True
        del self.overrun[tool.name]
        over.entry.end_ts = now
        if over.entry.start_ts is None:
            over.entry.start_ts = now
        return False

    def end_wear(self, name: str, t: float) -> None:
        """A new tool is not worn: a wear drift of the tool changed at ``t`` ends there."""
        drift = self.drift.get(name)
        if drift is None or drift.until <= t:
            return
        drift.until = t
        if drift.entry is not None:
            drift.entry.end_ts = self.start_ts + t
            # Cut short, the slowdown may be too small for the cycle-time chart to see.
            drift.entry.optional = tuple(r for r in drift.entry.rules if r == "cycle_time")
            drift.entry.rules = tuple(r for r in drift.entry.rules if r != "cycle_time")

    def end_cut(self, t: float) -> float:
        self.plan = []
        n = self.spec.parts_per_cycle
        bad = self.scrapped(t, n)
        self.part_count += n
        self.good += n - bad
        self.bad += bad
        self.emit(t, "part_count", self.part_count)
        if n > bad:
            self.emit(t, "part_count_good", self.good)
        if bad:
            self.emit(t, "part_count_bad", self.bad)
        self.emit(t, "cycle_time", round(t - self.phase_started, 3))
        return self.start_load(t)

    def scrapped(self, t: float, parts: int) -> int:
        """How many of the ``parts`` a cut ending at ``t`` made are bad (``scrap``).

        Deterministic, not drawn: every ``1 / rate``-th part is bad, so the share is exact
        and the machine's random stream is the same as on a day without scrap.
        """
        spell = self.scrap
        if spell is None:
            return 0
        if spell.until <= t:
            self.scrap = None
            return 0
        spell.due += spell.rate * parts
        bad = min(parts, int(spell.due))
        spell.due -= bad
        if bad:
            now = self.start_ts + t
            if spell.entry.start_ts is None:
                spell.entry.start_ts = now
            spell.entry.end_ts = now
        return bad

    def spindle_load(self, t: float) -> float:
        if self.down_until > t:
            return 0.0
        over = self.overload
        if over is not None and over.until > t:
            # The spindle drags (a seizing bearing, chips wrapped round the tool): the
            # load stays up between cuts too. ``rate`` holds the load in percent.
            now = self.start_ts + t
            if over.entry.start_ts is None:
                over.entry.start_ts = now
            over.entry.end_ts = now
            return round(min(150.0, max(0.0, over.rate + self.rng.gauss(0.0, 1.5))), 2)
        if self.phase != "cut":
            return 2.0
        wear = 0.0
        extra = 0.0
        for tool in self.spec.tools_on(self.pallet):
            wear = max(wear, self.counters[tool.name] / tool.life)
            drift = self.drift.get(tool.name)
            if drift is not None and drift.until > t:
                extra = max(extra, drift.rate * drift.cycles)
        noise = self.rng.gauss(0.0, 1.5)
        load = self.spec.spindle_base + self.spec.spindle_wear * wear + extra + noise
        return round(min(150.0, max(0.0, load)), 2)

    # --- faults --------------------------------------------------------------------

    def go_down(self, t: float, fault: Fault) -> float | None:
        """Stop the machine; returns when it recovers (None if already down longer)."""
        if fault.kind is FaultKind.MACHINE_DOWN:
            state, code, text, severity = (
                "stopped",
                ALARM_SPINDLE_DRIVE,
                "Spindle drive fault",
                "high",
            )
        else:
            state, code = "interrupted", ALARM_PALLET_CHANGER
            text, severity = "Pallet changer jammed", "medium"
        until = self.stop(t, t + fault.effective_duration_s, state)
        if until is not None:
            self.alarm = code
            self.emit(t, "alarm", code, text=text, severity=severity, active="true")
        return until

    def stop(self, t: float, until: float, state: str) -> float | None:
        """Stop cutting until ``until`` in run state ``state``; None if already down longer."""
        if self.down_until > t:
            self.down_until = max(self.down_until, until)
            return None
        self.down_until = until
        self.generation += 1
        # The pallet stays in the machine: its remaining tools (all of them while it was
        # still being loaded) cut after the recovery, so no pallet is skipped.
        if self.phase == "cut":
            self.resume = [tool for tool, _, _ in self.plan]
        elif self.phase == "load":
            self.resume = self.spec.tools_on(self.pallet)
        self.plan = []
        self.phase = "down"
        self.emit(t, "run_state", state)
        return until

    def pause(self, t: float, fault: Fault, entry: Injected) -> list[tuple[float, str]] | None:
        """One micro-stop of ``micro_stops``: a feed hold of ``length`` s, no alarm.

        The machine holds where it is (a load or a cut) and goes on from there: what was
        left of the load or of each tool's cut ends ``length`` later, so the cycle is that
        much longer and nothing is cut twice. Returns the deferred phase changes as
        ``(time, what)`` (the generation changed), or None when the machine is down or
        already held: that stop does not happen.
        """
        if self.phase not in ("load", "cut") or self.paused_until > t:
            return None
        length = fault.effective_length_s
        self.paused_until = t + length
        self.generation += 1
        self.emit(t, "run_state", "interrupted")
        if entry.start_ts is None:
            entry.start_ts = self.start_ts + t
        self.phase_ends += length
        if self.phase == "load":
            return [(self.phase_ends, "cut")]
        self.plan = [(tool, a if a <= t else a + length, b + length) for tool, a, b in self.plan]
        return [(b, "tool") for _, _, b in self.plan] + [(self.phase_ends, "end")]

    def unpause(self, t: float, entry: Injected, last: bool) -> None:
        """The end of a micro-stop: executing again (unless it went down meanwhile)."""
        if self.paused_until != t or self.phase == "down":
            return
        self.paused_until = -1.0
        self.emit(t, "run_state", "executing")
        if last:
            entry.end_ts = self.start_ts + t

    def burst_alarm(self, t: float, entry: Injected, active: bool, last: bool) -> None:
        """One raise (or clear) of an ``alarm_burst``: a warning; the machine runs on."""
        now = self.start_ts + t
        if active:
            if entry.start_ts is None:
                entry.start_ts = now
            self.emit(
                t,
                "alarm",
                ALARM_COOLANT_LOW,
                text="Coolant level low",
                severity="low",
                active="true",
            )
            return
        self.emit(t, "alarm", ALARM_COOLANT_LOW, active="false")
        if last:
            entry.end_ts = now

    def recover(self, t: float) -> float:
        for entry in self.truth_down:
            entry.end_ts = self.start_ts + t
        self.truth_down = []
        if self.alarm:
            self.emit(t, "alarm", self.alarm, active="false")
        self.alarm = 0
        self.down_until = -1.0
        self.generation += 1
        self.emit(t, "run_state", "executing")
        if self.resume:
            return t  # cut the loaded pallet's remaining tools at once
        return self.start_load(t)

    def truth(self, t: float, fault: Fault, entry: Injected) -> None:
        """Set the ground truth known at injection (the spells that carry it start here);
        the rest is set when the fault shows in the signals."""
        kind = fault.kind
        now = self.start_ts + t
        lasts = fault.effective_duration_s
        if kind in (FaultKind.TOOL_WEAR_DRIFT, FaultKind.PALLET_LOOPED_OUT):
            entry.start_ts = now
            entry.end_ts = now + lasts if lasts != float("inf") else None
        elif kind in (FaultKind.STUCK_PALLET, FaultKind.MACHINE_DOWN):
            entry.start_ts = now
            self.truth_down.append(entry)
        elif kind is FaultKind.SLOW_CYCLES:
            # Shows with the first cut that starts slow; ends with the spell.
            entry.end_ts = now + lasts
            self.slow = _Spell(fault.rate, t + lasts, entry)
        elif kind is FaultKind.SCRAP:
            self.scrap = _Spell(fault.rate, t + lasts, entry)  # shows with the first bad part
        elif kind is FaultKind.TOOL_NOT_CHANGED:
            self.overrun[fault.tool] = _Overrun(fault.effective_amount, entry)
        elif kind is FaultKind.SPINDLE_OVERLOAD:
            # Shows with the first sample over; ends with the last.
            self.overload = _Spell(float(fault.effective_amount), t + lasts, entry)
        elif kind in (FaultKind.ALARM_BURST, FaultKind.MICRO_STOPS):
            pass  # acted out by the plant's scheduled raises and stops
        else:
            self.truth_tool.setdefault(fault.tool, []).append(entry)

    def apply(self, t: float, fault: Fault, entry: Injected) -> float | None:
        """Apply a machine fault; returns a recovery time when the machine went down.

        ``entry`` is the fault's ground truth: its times are set here, or when the fault
        shows in the signals (the tool's next event, the recovery).
        """
        kind = fault.kind
        self.truth(t, fault, entry)
        if kind is FaultKind.TOOL_WEAR_DRIFT:
            self.drift[fault.tool] = _Drift(fault.rate, t + fault.effective_duration_s, entry=entry)
        elif kind is FaultKind.PREMATURE_TOOL_CHANGE:
            self.premature.add(fault.tool)
        elif kind is FaultKind.COUNTER_JUMP:
            self.jump[fault.tool] = self.jump.get(fault.tool, 0) + fault.effective_amount
        elif kind is FaultKind.COUNTER_ROLLBACK:
            # The counter ends `amount` below where it was, after this cycle's increment.
            tool = self.spec.tool(fault.tool)
            increment = tool.increment if tool is not None else 1
            self.jump[fault.tool] = (
                self.jump.get(fault.tool, 0) - increment - fault.effective_amount
            )
        elif kind is FaultKind.PALLET_LOOPED_OUT:
            self.looped_out[fault.pallet] = t + fault.effective_duration_s
        elif kind in (FaultKind.STUCK_PALLET, FaultKind.MACHINE_DOWN):
            return self.go_down(t, fault)
        return None


def _machine_rng(seed: int, machine_id: str) -> random.Random:
    # One generator per machine, derived from the seed and the id, so adding a machine to
    # a plant does not change the signals of the others.
    return random.Random(seed * 1_000_003 + zlib.crc32(machine_id.encode()))


class Plant:
    """The simulated plant: machines, a scenario, a seed, and a simulated clock."""

    def __init__(
        self,
        machines: Sequence[MachineSpec],
        scenario: Scenario | None = None,
        *,
        seed: int = 0,
        start_ts: float = DEFAULT_START_TS,
    ) -> None:
        ids = [m.id for m in machines]
        if len(set(ids)) != len(ids):
            raise ValueError("machine ids must be unique")
        self.specs = tuple(machines)
        self.scenario = scenario or Scenario()
        self.start_ts = start_ts
        self.elapsed = 0.0
        self._machines = [_Machine(s, _machine_rng(seed, s.id), start_ts) for s in machines]
        self._index = {m.spec.id: i for i, m in enumerate(self._machines)}
        self._heap: list[tuple[float, int, int, str, int, Fault | _Part | None]] = []
        self._seq = 0
        self._transport_due: list[Fault] = []
        #: Ground truth: every fault occurrence injected so far (sim/plant/ledger.py).
        self.ledger: list[Injected] = []
        self._started = False
        for fault in self.scenario.faults:
            if fault.machine and fault.machine not in self._index:
                raise ValueError(
                    f"scenario fault {fault.kind.value}: unknown machine {fault.machine!r}"
                )
            if fault.tool and fault.machine:
                spec = self._machines[self._index[fault.machine]].spec
                if spec.tool(fault.tool) is None:
                    where = f"scenario fault {fault.kind.value}"
                    raise ValueError(f"{where}: {fault.machine} has no tool {fault.tool}")
            self._push(fault.at_s, -1, "fault", 0, fault)

    @property
    def now_ts(self) -> float:
        """The simulated wall clock (Unix seconds)."""
        return self.start_ts + self.elapsed

    def _push(
        self, t: float, machine: int, what: str, gen: int, job: Fault | _Part | None = None
    ) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, machine, what, gen, job))

    def _start(self) -> None:
        self._started = True
        for i, m in enumerate(self._machines):
            m.snapshot(0.0)
            # Stagger the machines so they do not all change pallets in the same second.
            offset = m.rng.uniform(0.0, m.spec.cycle_time_s / 2)
            self._push(offset, i, "cut", m.generation)
            self._push(m.spec.sample_interval_s, i, "sample", 0)

    def advance(self, seconds: float) -> list[Signal]:
        """Run the plant ``seconds`` of simulated time; the signals, by source time."""
        if seconds < 0:
            raise ValueError("cannot go back in time")
        if not self._started:
            self._start()
        until = self.elapsed + seconds
        while self._heap and self._heap[0][0] <= until:
            t, _, i, what, gen, job = heapq.heappop(self._heap)
            self._step(t, i, what, gen, job)
        self.elapsed = until
        out: list[Signal] = []
        for m in self._machines:
            out.extend(m.out)
            m.out = []
        out.sort(key=lambda s: s.source_ts)  # stable: a machine's same-time order is kept
        return out

    def _step(self, t: float, i: int, what: str, gen: int, job: Fault | _Part | None) -> None:
        if isinstance(job, Fault):
            self._fault(t, job)
            return
        if isinstance(job, _Part):
            self._part(t, i, what, job)
            return
        m = self._machines[i]
        if what == "sample":
            m.emit(t, "spindle_load", m.spindle_load(t))
            self._push(t + m.spec.sample_interval_s, i, "sample", 0)
            return
        if what == "recover":
            if m.down_until <= t + 1e-9 and m.phase == "down":
                self._push(m.recover(t), i, "cut", m.generation)
            return
        if gen != m.generation:
            return  # a fault replaced this phase change
        if what == "cut":
            end = m.start_cut(t)
            for _, _, tool_end in m.plan:
                self._push(tool_end, i, "tool", m.generation)
            self._push(end, i, "end", m.generation)
        elif what == "tool":
            m.end_tool(t)
        elif what == "end":
            self._push(m.end_cut(t), i, "cut", m.generation)

    def _part(self, t: float, i: int, what: str, part: _Part) -> None:
        """A raise or clear of an alarm burst, a stop or restart of micro-stops."""
        m = self._machines[i]
        if what == "pause":
            deferred = m.pause(t, part.fault, part.entry)
            if deferred is not None:
                for when, phase in deferred:
                    self._push(when, i, phase, m.generation)
                self._push(m.paused_until, i, "unpause", 0, part)
        elif what == "unpause":
            m.unpause(t, part.entry, part.last)
        else:
            m.burst_alarm(t, part.entry, what == "alarm_on", part.last)

    def _fault(self, t: float, fault: Fault) -> None:
        if fault.every_s > 0:
            self._push(t + fault.every_s, -1, "fault", 0, fault)
        subject = ""
        if fault.kind is FaultKind.PALLET_LOOPED_OUT:
            subject = str(fault.pallet)
        elif fault.kind is FaultKind.ALARM_BURST:
            subject = str(ALARM_COOLANT_LOW)  # alarm_frequency's subject is the code
        entry = Injected.of(fault, self.start_ts + t, subject)
        self.ledger.append(entry)
        if fault.transport:
            # Acted out by the servers at once; a plant-wide fault with no machine signal.
            entry.start_ts = self.start_ts + t
            restart = fault.kind is FaultKind.SERVER_RESTART
            entry.end_ts = entry.start_ts + (0.0 if restart else fault.effective_duration_s)
            self._transport_due.append(fault)
            return
        i = self._index[fault.machine]
        if fault.kind in (FaultKind.ALARM_BURST, FaultKind.MICRO_STOPS):
            # Evenly spread over the fault's duration, the first at once.
            gap = fault.effective_duration_s / fault.effective_amount
            for k in range(fault.effective_amount):
                at, part = t + k * gap, _Part(fault, entry, k)
                if fault.kind is FaultKind.MICRO_STOPS:
                    self._push(at, i, "pause", 0, part)
                else:
                    self._push(at, i, "alarm_on", 0, part)
                    self._push(at + fault.effective_length_s, i, "alarm_off", 0, part)
        recover_at = self._machines[i].apply(t, fault, entry)
        if recover_at is not None:
            self._push(recover_at, i, "recover", 0)
        elif self._machines[i].down_until > t:
            # Extended downtime: schedule a recovery check at the new end.
            self._push(self._machines[i].down_until, i, "recover", 0)

    def take_transport_faults(self) -> list[Fault]:
        """Transport faults that became due since the last call (for server/publisher)."""
        due, self._transport_due = self._transport_due, []
        return due


#: Standard tool lives seen in the plants (DOMAIN.md section 3).
STANDARD_LIVES = (198, 348, 798, 1798, 2498, 2998, 3498)


def default_specs(ids: Sequence[str]) -> list[MachineSpec]:
    """Varied but fixed specs for machines given only by id (the demo, quick tests)."""
    specs = []
    for n, machine_id in enumerate(ids):
        lives = STANDARD_LIVES[n % 3 :] + STANDARD_LIVES[: n % 3]
        tools = (
            ToolSpec(1, life=lives[0]),
            ToolSpec(2, life=lives[1]),
            ToolSpec(3, life=lives[2], increment=2, pallets=(1,)),
        )
        specs.append(
            MachineSpec(
                id=machine_id,
                cycle_time_s=20.0 + 5.0 * (n % 4),
                program=f"O{1000 + 10 * n}",
                tools=tools,
            )
        )
    return specs
