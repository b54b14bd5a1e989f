"""The rule state of one machine: what the engine remembers between signals.

Everything a worker needs to resume a partition exactly where another stopped lives in
:class:`MachineState`: the machine's last known facts (run state, mode, program, pallet),
each tool's counter history, each rule's private state (plain JSON values), the anomaly
lifecycles (:class:`Alert`) and the occurrence numbers of every fingerprint. It is
checkpointed as one JSON blob per machine in the partition's state hash, atomically with
the acknowledgement of the entries it reflects (see ``rules/stream.py``).

The blob is written with orjson: every machine touched is serialized every checkpoint
interval, a state holds hundreds of floats, and the standard encoder's float formatting
was a large share of a worker's time (docs/decisions/0308-rules-hot-path.md). One
difference: a non-finite float (which no collector writes: the entry encoder
refuses them) is checkpointed as ``null`` instead of the non-standard ``NaN``.

Occurrence numbers come from this state, never from the database: a worker replaying
entries after a crash computes the same ``(fingerprint, occurrence)`` and meets the
episode it already wrote (see ``rules/sink.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Version of the checkpoint blob; a worker refuses blobs of a version it does not know.
STATE_VERSION = 1


def _plain(value: Any) -> Any:
    """orjson's fallback: a float subclass (numpy's ``float64``) as a float, as ``json`` does."""
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def fingerprint(machine: str, rule: str, subject: str) -> str:
    """The series an episode belongs to: machine, rule and subject (tool, pallet, code)."""
    return hashlib.sha256(f"{machine}\x1f{rule}\x1f{subject}".encode()).hexdigest()[:32]


#: An episode's machine state lists the tools changed this long before its last sample...
SNAPSHOT_CHANGES_S = 7200.0
#: ...at most this many of them, the latest.
SNAPSHOT_CHANGES = 5
#: Pallet changes a machine's state keeps (the evidence chart marks those in its span).
PALLET_CHANGES = 4


@dataclass(slots=True)
class ToolState:
    """One tool's counter and recent machining events (the plants' rules work on these)."""

    counter: float | None = None
    limit: int | None = None  # the controller's tool-life limit, when it reports one
    increment: int | None = None  # counts per event, when the signal says
    life_start: float | None = None  # source time the current life began
    changes: int = 0
    pallets_seen: list[str] = field(default_factory=list)
    by_pallet: dict[str, list[float]] = field(default_factory=dict)  # pallet -> [counter, start]
    prev: list[Any] | None = None  # [pallet, counter, start] of the last machining event
    window: list[str] = field(default_factory=list)  # pallets of events since shift start
    window_shift: float = 0.0  # start of the shift the window belongs to
    # pallet -> start of the tool's last event there. Unlike ``by_pallet`` it outlives a
    # tool change: the cycle time is the pallet's, whatever tool sits in the holder.
    starts: dict[str, float] = field(default_factory=dict)
    # The last machining event ([pallet, counter, start]) and explicit tool change
    # ([source time, value]) seen, to know them when they are delivered again. Unlike
    # ``prev`` they outlive a tool change: a message delivered again after the change
    # signal that followed it is still the same message.
    last_event: list[Any] | None = None
    last_change: list[Any] | None = None

    def to_json(self) -> list[Any]:
        return [
            self.counter,
            self.limit,
            self.increment,
            self.life_start,
            self.changes,
            self.pallets_seen,
            self.by_pallet,
            self.prev,
            self.window,
            self.window_shift,
            self.starts,
            self.last_event,
            self.last_change,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> ToolState:
        return cls(*data)  # a blob written before the last fields existed has fewer items

    def reset_history(self) -> None:
        """A tool change: readings of the old life are not compared with the new one."""
        self.by_pallet = {}
        self.prev = None


@dataclass(slots=True)
class Alert:
    """One anomaly series' lifecycle on a machine: pending, then firing, until resolved.

    Times named ``*_at`` are on the engine clock (receive time or tick); ``started`` and
    ``last_src`` are source times, which the episode reports.
    """

    rule: str
    subject: str
    state: str  # pending | firing
    active: bool  # the condition holds now
    active_at: float
    started: float
    last_src: float
    headline: str
    detail: str
    evidence: dict[str, Any]
    cleared_at: float | None = None
    fingerprint: str = ""
    occurrence: int = 0
    opened: bool = False  # its episode is in the database
    fired_at: float = 0.0
    last_notified: float = 0.0
    level: int = 0  # escalation level of its ticket
    repeats: int = 0  # recurrences since it fired
    notified_repeats: int = 0  # repeats at the last notification
    ticket_ref: str = ""
    held: str = ""  # inhibited | silenced: why not firing yet; restored: see restore()
    resolve_at: float | None = None  # resolved before its group was written

    def to_json(self) -> list[Any]:
        return [
            self.rule,
            self.subject,
            self.state,
            self.active,
            self.active_at,
            self.started,
            self.last_src,
            self.headline,
            self.detail,
            self.evidence,
            self.cleared_at,
            self.fingerprint,
            self.occurrence,
            self.opened,
            self.fired_at,
            self.last_notified,
            self.level,
            self.repeats,
            self.notified_repeats,
            self.ticket_ref,
            self.held,
            self.resolve_at,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> Alert:
        return cls(*data)


class MachineState:
    """What the engine knows about one machine. ``dispatch`` is rebuilt, never saved."""

    __slots__ = (
        "active_tool",
        "alerts",
        "cycle_start",
        "dispatch",
        "fastest",
        "fastest_cycle",
        "feed",
        "group",
        "id",
        "last_alarm",
        "last_cycle_end",
        "last_rx",
        "last_src",
        "mode",
        "occ",
        "pallet",
        "pallet_changes",
        "part_count",
        "part_ts",
        "program",
        "rules",
        "run_since",
        "run_state",
        "tools",
    )

    def __init__(self, machine_id: str) -> None:
        self.id = machine_id
        self.last_rx = 0.0  # engine clock of the last signal
        self.last_src = 0.0  # source time of the last signal
        self.run_state = ""
        self.run_since = 0.0  # source time run_state last changed
        self.mode = ""  # operation mode; "" = not reported
        self.program = ""
        self.feed = 100.0
        self.active_tool = ""
        self.pallet = ""
        # [source time, pallet] of the last PALLET_CHANGES pallet changes (chart markers).
        self.pallet_changes: list[list[Any]] = []
        self.part_count: float | None = None
        self.part_ts: float | None = None  # source time of the last part-count increment
        self.cycle_start: float | None = None
        self.last_cycle_end = 0.0
        self.last_alarm: list[Any] | None = None  # [code, text, source time]
        self.fastest: dict[str, float] = {}  # program -> fastest derived cycle_time signal
        # program -> the plants' Fastest_Cycle_Time: the smallest non-zero time from one
        # machining event's start to the next start of the same tool on the same pallet.
        self.fastest_cycle: dict[str, float] = {}
        self.tools: dict[str, ToolState] = {}
        self.rules: dict[str, Any] = {}  # rule name -> its private JSON state
        self.alerts: dict[str, Alert] = {}  # "rule\x1fsubject" -> lifecycle
        self.occ: dict[str, int] = {}  # fingerprint -> last occurrence used
        self.group: list[Any] | None = None  # [deadline, [alert keys]] awaiting one ticket
        self.dispatch: dict[str, tuple[Any, ...]] = {}

    def tool(self, name: str) -> ToolState:
        tool = self.tools.get(name)
        if tool is None:
            tool = self.tools[name] = ToolState()
        return tool

    def snapshot(self) -> dict[str, Any]:
        """The machine's state as evidence on an episode (what a technician asks first)."""
        out: dict[str, Any] = {
            "run_state": self.run_state or None,
            "operation_mode": self.mode or None,
            "program": self.program or None,
            "pallet": self.pallet or None,
            "active_tool": self.active_tool or None,
            "feed_override": self.feed,
            "part_count": self.part_count,
        }
        if self.last_alarm is not None:
            out["last_alarm"] = {"code": self.last_alarm[0], "text": self.last_alarm[1]}
            if len(self.last_alarm) > 2 and isinstance(self.last_alarm[2], int | float):
                out["last_alarm"]["ts"] = self.last_alarm[2]
        # The tools changed in the last SNAPSHOT_CHANGES_S (at most SNAPSHOT_CHANGES of
        # them): the evidence chart marks them (web/charts.py).
        changes = sorted(
            (t.life_start, name)
            for name, t in self.tools.items()
            if t.changes  # life_start is then the change's time, not the first sample's
            and t.life_start is not None
            and self.last_src - t.life_start <= SNAPSHOT_CHANGES_S
        )[-SNAPSHOT_CHANGES:]
        if changes:
            out["tool_changes"] = {name: ts for ts, name in changes}
        pallets = [
            {"ts": ts, "pallet": pallet}
            for ts, pallet in self.pallet_changes
            if self.last_src - ts <= SNAPSHOT_CHANGES_S
        ]
        if pallets:
            out["pallet_changes"] = pallets
        return out

    def to_blob(self) -> str:
        return orjson.dumps(
            {
                "v": STATE_VERSION,
                "rx": self.last_rx,
                "src": self.last_src,
                "run": [self.run_state, self.run_since],
                "mode": self.mode,
                "program": self.program,
                "feed": self.feed,
                "tool": self.active_tool,
                "pallet": self.pallet,
                "pallet_changes": self.pallet_changes,
                "parts": [self.part_count, self.part_ts],
                "cycle": [self.cycle_start, self.last_cycle_end],
                "alarm": self.last_alarm,
                "fastest": self.fastest,
                "fastest_cycle": self.fastest_cycle,
                "tools": {k: t.to_json() for k, t in self.tools.items()},
                "rules": self.rules,
                "alerts": {k: a.to_json() for k, a in self.alerts.items()},
                "occ": self.occ,
                "group": self.group,
            },
            default=_plain,
            # Keys as ``json`` writes them: a number or a boolean key becomes its text.
            option=orjson.OPT_NON_STR_KEYS,
        ).decode()

    @classmethod
    def from_blob(cls, machine_id: str, blob: str) -> MachineState:
        data = json.loads(blob)
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"rule state of {machine_id} has unknown version {data.get('v')!r}")
        m = cls(machine_id)
        m.last_rx = data["rx"]
        m.last_src = data["src"]
        m.run_state, m.run_since = data["run"]
        m.mode = data["mode"]
        m.program = data["program"]
        m.feed = data["feed"]
        m.active_tool = data["tool"]
        m.pallet = data["pallet"]
        m.pallet_changes = data.get("pallet_changes", [])  # absent from older blobs
        m.part_count, m.part_ts = data["parts"]
        m.cycle_start, m.last_cycle_end = data["cycle"]
        m.last_alarm = data["alarm"]
        m.fastest = data["fastest"]
        m.fastest_cycle = data.get("fastest_cycle", {})  # absent from older blobs
        m.tools = {k: ToolState.from_json(v) for k, v in data["tools"].items()}
        m.rules = data["rules"]
        m.alerts = {k: Alert.from_json(v) for k, v in data["alerts"].items()}
        m.occ = data["occ"]
        m.group = data["group"]
        return m
