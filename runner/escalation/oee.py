"""OEE per machine and shift, by the standard definition (see ``runner/README.md``).

* **planned time** = the shift's real elapsed length minus its configured breaks, counted
  only from when the signal streams cover the shift (the covered share is reported);
* **availability** = run time / planned time, run time being planned time minus downtime
  (the downtime episodes in the database) and setup (time in a ``setup_modes`` operation
  mode, from the ``operation_mode`` signal): setup is an availability loss;
* **performance** = ideal cycle x total count / run time, per program: the ideal is the
  configured ``standard_cycle_s`` (``machine/program`` or ``machine``), else the rules'
  ``fastest_cycle_time_s``, else the fastest cycle seen in the shift that is not a glitch
  (shorter than ``rules.min_cycle_time_s``, as the rules engine ignores them);
* **quality** = good / total count; counter rises are counted from the last value before
  the shift, a drop being a reset to zero.

Nothing is capped: a factor above 100 % is shown and flagged as impossible (a wrong ideal
cycle, a double-counting counter). A factor the data cannot give is ``None`` with the
reason in the notes, never a guess: a machine that sent nothing in the shift and has no
downtime episode is "n/a", not 100 % available.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from core.model import SignalName, Value
from runner.escalation.shift import ShiftWindow, Span, intersect, merge, seconds, subtract
from runner.escalation.signals import COUNTERS, MachineSignals

_GOOD = SignalName.PART_COUNT_GOOD.value
_BAD = SignalName.PART_COUNT_BAD.value
_ALL = SignalName.PART_COUNT.value


@dataclass(frozen=True)
class OeeSettings:
    """What configuration says about OEE (one value per report)."""

    standard_cycle_s: dict[str, float] = field(default_factory=dict)
    rules_fastest_s: dict[str, float] = field(default_factory=dict)
    min_cycle_s: float = 1.0
    setup_modes: frozenset[str] = frozenset({"setup"})


@dataclass(frozen=True)
class OeeRow:
    """One machine's shift: the times and counts an OEE is checked with, and the factors."""

    machine_id: str
    name: str
    covered_share: float | None
    covered_from: datetime | None
    planned_s: float
    downtime_s: float
    setup_s: float
    run_s: float | None  # None: unknown (a silent machine)
    total: int | None
    good: int | None
    scrap: int | None
    ideal_cycle_s: float | None
    ideal_source: str
    availability: float | None
    performance: float | None
    quality: float | None
    notes: tuple[str, ...] = ()
    impossible: tuple[str, ...] = ()

    @property
    def oee(self) -> float | None:
        if self.availability is None or self.performance is None or self.quality is None:
            return None
        return self.availability * self.performance * self.quality

    @property
    def note(self) -> str:
        return "; ".join(self.impossible + self.notes)


def _number(value: Value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class _Walk:
    """Counter rises, cycles and setup spans of one machine, by program."""

    rises: dict[str, dict[str, float]] = field(default_factory=dict)  # counter -> program -> n
    cycles: dict[str, list[float]] = field(default_factory=dict)  # program -> cycle times
    setup: list[Span] = field(default_factory=list)
    unbased: list[str] = field(default_factory=list)  # counters without a value before


def _count(
    out: _Walk, last: dict[str, float], name: str, value: float | None, program: str
) -> None:
    if value is None:
        return
    by_program = out.rises.setdefault(name, {})
    if name not in last:
        # No reading before the shift: rises count from this first one.
        out.unbased.append(name)
        by_program.setdefault(program, 0.0)
    else:
        before = last[name]
        rise = value - before if value >= before else value  # a drop is a reset to zero
        by_program[program] = by_program.get(program, 0.0) + rise
    last[name] = value


def _walk(sig: MachineSignals, start: datetime, end: datetime, modes: frozenset[str]) -> _Walk:
    out = _Walk()
    last: dict[str, float] = {}
    for name in COUNTERS:
        base = _number(sig.before.get(name))
        if base is not None:
            last[name] = base
            # A counter that did not move (and was not sent again) rose by zero.
            out.rises[name] = {}
    program = str(sig.before.get(SignalName.PROGRAM.value, ""))
    mode = str(sig.before.get(SignalName.OPERATION_MODE.value, ""))
    mode_since = start
    for sample in sig.samples:
        if sample.name == SignalName.PROGRAM.value:
            program = str(sample.value)
        elif sample.name == SignalName.OPERATION_MODE.value:
            if mode in modes:
                out.setup.append((mode_since, sample.at))
            mode, mode_since = str(sample.value), sample.at
        elif sample.name == SignalName.CYCLE_TIME.value:
            value = _number(sample.value)
            if value is not None:
                out.cycles.setdefault(program, []).append(value)
        elif sample.name in COUNTERS:
            _count(out, last, sample.name, _number(sample.value), program)
    if mode in modes:
        out.setup.append((mode_since, end))
    return out


def _ideal(machine: str, program: str, walk: _Walk, cfg: OeeSettings) -> tuple[float | None, str]:
    for key in (f"{machine}/{program}", machine):
        if key in cfg.standard_cycle_s:
            return cfg.standard_cycle_s[key], "standard"
    if machine in cfg.rules_fastest_s:
        return cfg.rules_fastest_s[machine], "rules"
    real = [c for c in walk.cycles.get(program, []) if c >= cfg.min_cycle_s]
    return (min(real), "fastest seen") if real else (None, "")


def _counts(walk: _Walk) -> tuple[dict[str, float], float | None, float | None]:
    """Total per program, good and scrap (``None`` where the counters do not tell)."""
    good_by = walk.rises.get(_GOOD)
    bad_by = walk.rises.get(_BAD)
    all_by = walk.rises.get(_ALL)
    good = sum(good_by.values()) if good_by is not None else None
    bad = sum(bad_by.values()) if bad_by is not None else None
    if all_by is not None:
        totals = dict(all_by) or {"": 0.0}
        if good is None and bad is not None:
            good = sum(totals.values()) - bad
        elif bad is None and good is not None:
            bad = sum(totals.values()) - good
        return totals, good, bad
    if good_by is None and bad_by is None:
        return {}, None, None
    summed: dict[str, float] = {}
    for part in (good_by or {}, bad_by or {}):
        for program, n in part.items():
            summed[program] = summed.get(program, 0.0) + n
    return summed or {"": 0.0}, good, bad


def _performance(
    machine: str, totals: dict[str, float], run_s: float, walk: _Walk, cfg: OeeSettings
) -> tuple[float | None, float | None, str, list[str], list[str]]:
    """Performance, the ideal shown (the fastest of the programs'), its source, notes and
    impossibilities."""
    if not totals:
        return None, None, "", ["no part counts or cycle times in the signal streams"], []
    earned = 0.0
    shown: float | None = None
    source = ""
    for program, n in totals.items():
        if n == 0:
            continue
        ideal, source = _ideal(machine, program, walk, cfg)
        if ideal is None:
            return None, None, "", [f"no ideal cycle for program {program or '(none)'}"], []
        shown = ideal if shown is None else min(shown, ideal)
        earned += ideal * n
    if earned == 0:
        return 0.0, shown, source, [], []
    if run_s <= 0:
        return None, shown, source, [], ["parts counted with no run time"]
    value = earned / run_s
    bad = ["performance above 100 %: check the ideal cycle"] if value > 1.0 + 1e-9 else []
    return value, shown, source, [], bad


def _quality(
    total: float | None, good: float | None, bad: float | None
) -> tuple[float | None, list[str], list[str]]:
    if total is None:
        return None, [], []
    if total == 0:
        return None, ["no parts counted"], []
    if good is None or bad is None:
        # Without both sides (or a total and one side) scrap is unknown, not zero.
        return None, ["no good/scrap counts in the signal streams"], []
    value = good / total
    wrong = ["good count outside 0..total"] if not 0 <= value <= 1.0 + 1e-9 else []
    return value, [], wrong


def compute(
    machine: str,
    name: str,
    window: ShiftWindow,
    *,
    covered_from: datetime | None,
    downtime: list[Span],
    signals: MachineSignals,
    cfg: OeeSettings,
    truncated: bool = False,
) -> OeeRow:
    """The OEE row of one machine over the covered part of ``window``."""
    notes: list[str] = []
    start = max(covered_from or window.start, window.start)
    planned = window.planned(start)
    planned_s = seconds(planned)
    whole_s = seconds(window.planned())
    shown_from = covered_from if covered_from is not None and covered_from > window.start else None
    if shown_from is not None:
        notes.append(f"signals only from {window.local(shown_from):%H:%M %Z}")
    if truncated:
        notes.append("signal scan truncated")
    walk = _walk(signals, start, window.end, cfg.setup_modes)
    down = intersect(downtime, planned)
    setup = subtract(intersect(walk.setup, planned), down)
    run_s = planned_s - seconds(merge(down + setup))
    row = OeeRow(
        machine_id=machine,
        name=name,
        covered_share=planned_s / whole_s if whole_s else None,
        covered_from=shown_from,
        planned_s=planned_s,
        downtime_s=seconds(down),
        setup_s=seconds(setup),
        run_s=run_s,
        total=None,
        good=None,
        scrap=None,
        ideal_cycle_s=None,
        ideal_source="",
        availability=None,
        performance=None,
        quality=None,
    )
    if planned_s <= 0:
        notes.append("no planned time covered by the signal streams")
        return replace(row, notes=tuple(notes))
    if signals.seen == 0 and not down:
        notes.append("no signals from the machine in the shift (no data is not downtime)")
        return replace(row, run_s=None, notes=tuple(notes))

    totals, good, bad = _counts(walk)
    if walk.unbased:
        notes.append("no count before the shift: counted from the first reading")
    if not totals:
        # No counters: one valid cycle is one part.
        totals = {
            p: float(len([c for c in cs if c >= cfg.min_cycle_s])) for p, cs in walk.cycles.items()
        }
        if totals:
            notes.append("total from cycle times (no part counters)")
    total = sum(totals.values()) if totals else None
    performance, ideal, source, p_notes, p_bad = _performance(machine, totals, run_s, walk, cfg)
    quality, q_notes, q_bad = _quality(total, good, bad)
    return replace(
        row,
        total=None if total is None else round(total),
        good=None if good is None else round(good),
        scrap=None if bad is None else round(bad),
        ideal_cycle_s=ideal,
        ideal_source=source,
        availability=run_s / planned_s,
        performance=performance,
        quality=quality,
        notes=tuple(notes + p_notes + q_notes),
        impossible=tuple(p_bad + q_bad),
    )
