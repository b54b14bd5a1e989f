"""Live machine state and upcoming tool changes, read from Redis for the boards.

What the boards expect (written by the rules engine and the collector, names from
``core.keys``):

- ``keys.machine_live(machine)``: a hash. ``state`` is one of ``running``, ``idle``,
  ``down``, ``no_data`` (another word is shown as it is); ``state_since`` and
  ``updated_at`` are Unix seconds; every other field is the latest value of a signal by
  its canonical name (``part_count``, ``tool_number``, ``spindle_load``, ``program``...),
  shown on the machine's tile as "recent signals"; ``fastest_cycle_time`` is the plants'
  fastest cycle the rules learned (text with its unit, ``"57 s"``).
- ``keys.machine_last_seen()``: a hash machine -> Unix seconds of the last sample received.
- ``keys.UPCOMING_TOOL_CHANGES``: a sorted set, member ``<machine>|<tool>``, score =
  minutes remaining.

The state is judged from the write that carries it: a hash whose ``updated_at`` is older
than ``web.no_data_after_s`` shows "no data", whatever its last state was ("no data" is not
"stopped"), and says why: the machine fell silent (``last_seen`` old too) or the rules
engine stopped writing while the machine still sends (``last_seen`` fresh), which is a
RepSys fault a supervisor must not mistake for a running machine. The hash's TTL only
tidies up; it is never what makes a tile stale.

Values are shown with the unit and rounding of :data:`SIGNAL_FORMATS` (``web.signals``
adds to or overrides them): "cycle time 35.9 s", not "cycle_time 35.914".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import keys
from core.config import Machine
from core.config.web import SignalDisplay
from core.redis import RedisCommands

#: States the board colours; anything else is shown as it is, uncoloured.
KNOWN_STATES = ("running", "idle", "down", "no_data")
#: Hash fields that describe the state itself rather than a signal.
META_FIELDS = frozenset({"state", "state_since", "updated_at", "v"})
#: Signals shown first on a tile, in this order, when present.
PREFERRED_SIGNALS = (
    "program",
    "part_count",
    "tool_number",
    "cycle_time",
    "fastest_cycle_time",
    "spindle_load",
    "feed_override",
    "alarm",
)


#: How the boards show a signal by default: label, unit and decimals (None: as text).
SIGNAL_FORMATS: dict[str, SignalDisplay] = {
    "program": SignalDisplay(label="program"),
    "part_count": SignalDisplay(label="part count", decimals=0),
    "tool_number": SignalDisplay(label="tool", decimals=0),
    "pallet": SignalDisplay(label="pallet", decimals=0),
    "cycle_time": SignalDisplay(label="cycle time", unit="s", decimals=1),
    "fastest_cycle_time": SignalDisplay(label="fastest cycle time"),
    "spindle_load": SignalDisplay(label="spindle load", unit="%", decimals=0),
    "spindle_speed": SignalDisplay(label="spindle speed", unit="rpm", decimals=0),
    "feed_override": SignalDisplay(label="feed override", unit="%", decimals=0),
    "feed_rate": SignalDisplay(label="feed rate", unit="mm/min", decimals=0),
    "alarm": SignalDisplay(label="alarm"),
    "run_state": SignalDisplay(label="run state"),
}


def signal_display(name: str, formats: Mapping[str, SignalDisplay] | None = None) -> SignalDisplay:
    """How ``name`` is shown: configured, else built in, else its name in words, as text."""
    fmt = (formats or {}).get(name) or SIGNAL_FORMATS.get(name)
    return fmt if fmt is not None else SignalDisplay(label=name.replace("_", " "))


def format_signal(
    name: str, raw: str, formats: Mapping[str, SignalDisplay] | None = None
) -> tuple[str, str]:
    """(label, value text) of one signal as a tile shows it: rounded, with its unit."""
    fmt = signal_display(name, formats)
    label = fmt.label or name.replace("_", " ")
    if fmt.decimals is None:
        return label, raw
    try:
        number = float(raw)
    except ValueError:
        return label, raw  # a word where a number was expected: shown as it came
    if not math.isfinite(number):
        return label, raw
    text = f"{number:.{fmt.decimals}f}"  # no separators: as the controller shows it
    if not fmt.unit:
        return label, text
    return label, f"{text}{fmt.unit}" if fmt.unit == "%" else f"{text} {fmt.unit}"


@dataclass(frozen=True)
class MachineStatus:
    """What the machines board shows for one machine."""

    machine: Machine
    state: str
    since: datetime | None
    last_seen: datetime | None
    signals: list[tuple[str, str]] = field(default_factory=list)
    #: Why the state is "no data": ``machine`` (silent) or ``rules`` (engine not writing).
    stale: str = ""
    #: When the rules engine last wrote the state.
    updated: datetime | None = None
    formats: Mapping[str, SignalDisplay] = field(default_factory=dict)

    @property
    def css_state(self) -> str:
        return self.state if self.state in KNOWN_STATES else "other"

    @property
    def state_label(self) -> str:
        return self.state.replace("_", " ")

    @property
    def labelled_signals(self) -> list[tuple[str, str]]:
        """The signals with readable labels, units and rounding, for the board's tiles."""
        return [format_signal(name, value, self.formats) for name, value in self.signals]

    @property
    def stale_text(self) -> str:
        if self.stale == "rules":
            return "RepSys is not updating this machine (rules engine silent)"
        if self.stale == "machine":
            return "the machine sends no data"
        return ""


@dataclass(frozen=True)
class ToolChange:
    """One line of the upcoming tool changes list."""

    machine: str
    tool: str
    minutes: float  # negative: overdue by that long
    as_of: datetime | None = None  # when the minutes were computed

    @property
    def overdue(self) -> bool:
        return self.minutes < 0


def _ts(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _signals(live: dict[str, str], limit: int = 6) -> list[tuple[str, str]]:
    """(name, value) of the signals a tile shows, the preferred ones first."""
    names = [n for n in PREFERRED_SIGNALS if n in live]
    names += sorted(n for n in live if n not in META_FIELDS and n not in PREFERRED_SIGNALS)
    return [(n, live[n][:64]) for n in names[:limit]]


def machine_statuses(
    redis: RedisCommands,
    machines: list[Machine],
    *,
    now: datetime,
    no_data_after_s: float,
    formats: Mapping[str, SignalDisplay] | None = None,
) -> list[MachineStatus]:
    """The live status of each machine, in configuration order."""
    pipe = redis.pipeline(transaction=False)
    for m in machines:
        pipe.hgetall(keys.machine_live(m.id))
    lives: list[dict[str, str]] = pipe.execute() if machines else []
    seen: dict[str, str] = redis.hgetall(keys.machine_last_seen()) if machines else {}
    out = []
    for m, live in zip(machines, lives, strict=True):
        last_seen = _ts(seen.get(m.id))
        updated = _ts(live.get("updated_at"))
        heard = max((t for t in (last_seen, updated) if t is not None), default=None)
        state = live.get("state", "") or "unknown"
        stale = ""
        if updated is None or (now - updated).total_seconds() > no_data_after_s:
            # The state is only as fresh as the write that carries it.
            silent = last_seen is None or (now - last_seen).total_seconds() > no_data_after_s
            stale = "machine" if silent else "rules"
            state = "no_data"
        out.append(
            MachineStatus(
                machine=m,
                state=state,
                since=_ts(live.get("state_since")),
                last_seen=heard,
                signals=_signals(live),
                stale=stale,
                updated=updated,
                formats=formats or {},
            )
        )
    return out


def upcoming_tool_changes(redis: RedisCommands, *, limit: int) -> list[ToolChange]:
    """The tool changes coming soonest first, overdue ones first of all (the plants' old
    tool tracker list), each with the time it was computed at."""
    rows = redis.zrange(keys.UPCOMING_TOOL_CHANGES, 0, limit - 1, withscores=True)
    stamps = redis.hmget(keys.UPCOMING_TOOL_CHANGES_AT, [str(m) for m, _ in rows]) if rows else []
    out = []
    for (member, score), stamp in zip(rows, stamps, strict=True):
        machine, _, tool = str(member).partition("|")
        out.append(
            ToolChange(machine=machine, tool=tool or "?", minutes=float(score), as_of=_ts(stamp))
        )
    return out


#: Signals the machine page charts, when the machine sends them (numbers only).
CHARTED_SIGNALS = ("cycle_time", "spindle_load", "part_count", "feed_override")
