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

A machine not heard from for ``web.no_data_after_s`` (by the later of ``last_seen`` and
``updated_at``) shows "no data", whatever its last state was: "no data" is not "stopped".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import keys
from core.config import Machine

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


@dataclass(frozen=True)
class MachineStatus:
    """What the machines board shows for one machine."""

    machine: Machine
    state: str
    since: datetime | None
    last_seen: datetime | None
    signals: list[tuple[str, str]] = field(default_factory=list)

    @property
    def css_state(self) -> str:
        return self.state if self.state in KNOWN_STATES else "other"

    @property
    def state_label(self) -> str:
        return self.state.replace("_", " ")

    @property
    def labelled_signals(self) -> list[tuple[str, str]]:
        """The signals with readable labels (``part count``), for the board's tiles."""
        return [(name.replace("_", " "), value) for name, value in self.signals]


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
    redis: Any, machines: list[Machine], *, now: datetime, no_data_after_s: float
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
        if heard is None or (now - heard).total_seconds() > no_data_after_s:
            state = "no_data"
        out.append(
            MachineStatus(
                machine=m,
                state=state,
                since=_ts(live.get("state_since")),
                last_seen=heard,
                signals=_signals(live),
            )
        )
    return out


def upcoming_tool_changes(redis: Any, *, limit: int) -> list[ToolChange]:
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
