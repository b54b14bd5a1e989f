"""Replaying signals through the engine without Redis or a database.

``repsys rules test CASES_DIR`` and ``repsys rules backtest`` both feed recorded signals to
the very :class:`rules.engine.Engine` the worker runs, with time taken from the signals
themselves, and apply the resulting actions to an in-memory :class:`Ledger` that mirrors
what ``rules/sink.py`` writes to the database (episodes, their tickets, escalations,
resolutions).

Input is JSON lines, one item per line:

- a signal: ``{"machine": "cnc120", "name": "machining_event", "value": 212, "ts": ...,
  "subject": "T1", "attrs": {"pallet": "1"}, "quality": "good", "rts": ...}`` (``ts`` is
  the source time, Unix seconds or ISO 8601; ``rts``, the receive time, defaults to it);
- a tick, letting time pass without signals: ``{"tick": ...}``;
- a silence: ``{"silence": {"machine": "cnc120", "rule": null, "starts": ..., "ends": ...}}``.

A golden case is a folder with ``config.yaml`` (the rules section, and machines when not
the default four), ``input.jsonl`` and ``expected.jsonl`` (one episode per line; only the
keys a line names are compared, ``evidence`` as a subset; a line ``{"forecast": {"machine":
..., "tool": ..., "minutes": ...}}`` expects that tool on the upcoming tool change list,
and then the list must be exactly the forecast lines).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from core.config import RepsysConfig, parse_config
from core.errors import ConfigError
from core.model import DecodeError, Quality, Signal
from rules.actions import Action, Escalate, OpenEpisodes, Resolve
from rules.alerts import ActiveSilence, utc_iso
from rules.engine import Engine, Program
from rules.errors import CaseError

#: Machines of a golden case that does not list its own (the demo plant's).
DEFAULT_MACHINES = [
    {"id": "cnc101", "name": "CNC 101", "pcn": 123681, "workcenter_key": 61101,
     "workcenter_code": "cnc101"},
    {"id": "cnc102", "name": "CNC 102", "pcn": 123681, "workcenter_key": 61102,
     "workcenter_code": "cnc102"},
    {"id": "cnc103", "name": "CNC 103", "pcn": 123681, "workcenter_key": 61324,
     "workcenter_code": "cnc103"},
    {"id": "cnc120", "name": "CNC 120", "pcn": 123681, "workcenter_key": 61120,
     "workcenter_code": "cnc120"},
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes to ``ts`` with no signal."""

    ts: float


Item = Signal | Tick | ActiveSilence


def _ts(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise CaseError(f"{where}: not a timestamp: {value!r}")


def item_from_json(data: Any, where: str) -> Item:
    """One input line → a signal, tick or silence. Raises :class:`CaseError`."""
    if not isinstance(data, dict):
        raise CaseError(f"{where}: a line must be a JSON object")
    if "tick" in data:
        return Tick(_ts(data["tick"], where))
    if "silence" in data:
        s = data["silence"]
        if not isinstance(s, dict):
            raise CaseError(f"{where}: silence must be an object")
        return ActiveSilence(
            machine=s.get("machine"),
            rule=s.get("rule"),
            starts=_ts(s.get("starts"), where),
            ends=_ts(s.get("ends"), where),
        )
    unknown = set(data) - {"machine", "name", "value", "ts", "rts", "subject", "attrs", "quality"}
    if unknown:
        raise CaseError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    try:
        ts = _ts(data["ts"], where)
        return Signal(
            machine=str(data["machine"]),
            name=str(data["name"]),
            value=data.get("value"),
            quality=Quality(data.get("quality", "good")),
            source_ts=ts,
            receive_ts=_ts(data.get("rts", ts), where),
            subject=str(data.get("subject", "")),
            attrs={str(k): str(v) for k, v in (data.get("attrs") or {}).items()},
        )
    except KeyError as exc:
        raise CaseError(f"{where}: missing key {exc.args[0]!r}") from None
    except ValueError as exc:
        raise CaseError(f"{where}: {exc}") from None


def read_items(path: Path) -> Iterator[Item]:
    """Items of a JSON-lines file; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CaseError(f"{path}: cannot read: {exc.strerror}") from exc
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CaseError(f"{path}:{n}: not JSON: {exc}") from None
        yield item_from_json(data, f"{path}:{n}")


def signals_from_entries(entries: Iterable[dict[str, str]]) -> Iterator[Signal | DecodeError]:
    """Stream entries → signals, or the decode error of each bad entry."""
    for fields in entries:
        try:
            yield Signal.from_fields(fields)
        except DecodeError as exc:
            yield exc


@dataclass
class Ledger:
    """What the database would hold after the actions: episodes and their tickets."""

    episodes: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, OpenEpisodes):
                ref = action.ticket_ref
                self.tickets[ref] = {
                    "title": action.title,
                    "description": action.description,
                    "severity": action.severity,
                    "category": action.category,
                    "machine": action.machine,
                    "escalation_level": 0,
                    "events": ["created"],
                }
                for d in action.episodes:
                    self.episodes[d.fingerprint, d.occurrence] = {
                        "machine": d.machine,
                        "rule": d.rule,
                        "type": d.rule_type,
                        "subject": d.subject,
                        "occurrence": d.occurrence,
                        "severity": d.severity,
                        "state": "firing",
                        "started_at": utc_iso(d.started),
                        "last_seen_at": utc_iso(d.last_seen),
                        "resolved_at": None,
                        "repeat_count": 0,
                        "escalation_level": 0,
                        "summary": d.summary,
                        "ticket": action.title,
                        "ticket_ref": ref,
                        "evidence": d.evidence,
                    }
            elif isinstance(action, Escalate):
                ep = self.episodes[action.fingerprint, action.occurrence]
                ep["repeat_count"] = action.repeats
                ep["escalation_level"] = action.level
                ep["last_seen_at"] = utc_iso(action.last_seen)
                ticket = self.tickets[action.ticket_ref]
                ticket["escalation_level"] = max(ticket["escalation_level"], action.level)
                ticket["events"].append("escalated")
            elif isinstance(action, Resolve):
                ep = self.episodes[action.fingerprint, action.occurrence]
                ep["state"] = "resolved"
                ep["resolved_at"] = utc_iso(action.at)
                ep["repeat_count"] = action.repeats
                ep["last_seen_at"] = utc_iso(action.last_seen)

    def rows(self) -> list[dict[str, Any]]:
        """Episodes in the order they started."""
        return sorted(
            self.episodes.values(),
            key=lambda e: (e["started_at"], e["machine"], e["rule"], e["subject"]),
        )


@dataclass
class Replay:
    """The outcome of a replay: the ledger, the engine, and what was counted."""

    ledger: Ledger
    engine: Engine
    stats: dict[tuple[str, str], int]
    forecasts: dict[tuple[str, str], int | None]


def replay(program: Program, items: Iterable[Item], *, tick_s: float = 1.0) -> Replay:
    """Run ``items`` through one engine, ticking every ``tick_s`` of signal time."""
    engine = Engine(program)
    ledger = Ledger()
    silences: list[ActiveSilence] = []
    stats: dict[tuple[str, str], int] = {}
    forecasts: dict[tuple[str, str], int | None] = {}
    last_tick = 0.0

    def drain() -> None:
        actions, fc = engine.take()
        ledger.apply(actions)
        for f in fc:
            forecasts[f.machine, f.tool] = f.minutes
        for key, n in engine.stats().items():
            stats[key] = stats.get(key, 0) + n

    # Actions keep their order in the engine until taken: draining now and then (to bound
    # memory) gives the same ledger as draining after every item.
    for n, item in enumerate(items):
        if isinstance(item, ActiveSilence):
            silences.append(item)
            engine.set_silences(silences)
            continue
        t = item.ts if isinstance(item, Tick) else (item.receive_ts or item.source_ts)
        if isinstance(item, Tick) or t - last_tick >= tick_s:
            engine.tick(t)
            last_tick = t
        if isinstance(item, Signal):
            engine.process(item)
        if n % 10_000 == 0:
            drain()
    drain()
    return Replay(ledger, engine, stats, forecasts)


# --- golden cases ---------------------------------------------------------------------


def case_config(case: Path) -> RepsysConfig:
    """A case's ``config.yaml`` over the default machines. Raises :class:`ConfigError`."""
    path = case / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections", file=str(path))
    data.setdefault("machines", DEFAULT_MACHINES)
    data.setdefault("plant", {"timezone": "America/Chicago"})
    return parse_config(data, file=str(path))


def _subset(expected: Any, actual: Any, path: str, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            else:
                _subset(value, actual[key], f"{path}.{key}", out)
    elif expected != actual:
        out.append(f"{path}: expected {expected!r}, got {actual!r}")


def compare(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    """Differences between expected and actual episodes (in order)."""
    out: list[str] = []
    if len(expected) != len(actual):
        out.append(f"expected {len(expected)} episodes, got {len(actual)}")
    for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
        _subset(want, got, f"episode[{i}]", out)
    for i, extra in enumerate(actual[len(expected) :], len(expected)):
        what = f"{extra['rule']} {extra['subject']!r}"
        out.append(f"episode[{i}]: unexpected {what}: {extra['summary']}")
    return out


@dataclass(frozen=True)
class CaseResult:
    """One golden case: its name, the differences (empty: passed), the actual episodes."""

    name: str
    problems: list[str]
    actual: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.problems


def run_case(case: Path) -> CaseResult:
    """Run one case folder. Raises :class:`ConfigError` / :class:`CaseError` on bad input."""
    cfg = case_config(case)
    program = Program(cfg, file=str(case / "config.yaml"))
    result = replay(program, read_items(case / "input.jsonl"))
    expected_path = case / "expected.jsonl"
    try:
        lines = expected_path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CaseError(f"{expected_path}: cannot read: {exc.strerror}") from exc
    expected: list[dict[str, Any]] = []
    forecasts: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise CaseError(f"{expected_path}:{n}: not JSON: {exc}") from None
            (forecasts if "forecast" in row else expected).append(row)
    actual = result.ledger.rows()
    problems = compare(expected, actual)
    listed = sorted(
        (machine, tool, minutes)
        for (machine, tool), minutes in result.forecasts.items()
        if minutes is not None
    )
    wanted = sorted(
        (f["forecast"]["machine"], f["forecast"]["tool"], f["forecast"]["minutes"])
        for f in forecasts
    )
    if forecasts and listed != wanted:
        problems.append(f"forecasts: expected {wanted}, got {listed}")
    return CaseResult(case.name, problems, actual)


def case_dirs(root: Path) -> list[Path]:
    """Case folders under ``root`` (or ``root`` itself when it is one case)."""
    if (root / "input.jsonl").exists():
        return [root]
    return sorted(p.parent for p in root.glob("*/input.jsonl"))
