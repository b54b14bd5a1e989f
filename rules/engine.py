"""The evaluation of one partition's signals: pure, deterministic, checkpointable.

:class:`Program` is built once per worker from the configuration (rules, facts, per-machine
dispatch tables). :class:`Engine` holds the state of the machines of one partition (or of
a whole replay) and turns signals and ticks into actions. It does no I/O: the worker reads
and writes Redis and the database around it, and ``rules test`` / ``rules backtest`` run
it on files, so what a golden case proves is what production runs.

Given the same state and the same entries, an engine produces the same actions; that is
what makes a replay after a crash land on the episodes already written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.config import RepsysConfig
from core.errors import ConfigError
from core.logs import get_logger
from core.model import Quality, Signal
from rules.actions import Action, Forecast, OpenEpisode
from rules.alerts import ActiveSilence, Lifecycle
from rules.derive import DERIVES, REDELIVERED, Deriver, Facts
from rules.state import MachineState
from rules.text import RuleText, rule_text
from rules.types import DEFAULT_CATEGORY, REGISTRY, TYPE_TITLES, Rule

log = get_logger(__name__)

_BAD = (Quality.BAD, Quality.NO_DATA)
#: Dispatch-table keys that are not signal names.
_BAD_KEY = "!bad"
_TICK_KEY = "!tick"


def check_scope(cfg: RepsysConfig, file: str = "") -> None:
    """Rules may only name configured machines. Raises :class:`ConfigError`."""
    known = {m.id for m in cfg.machines}
    for i, spec in enumerate(cfg.rules.rules):
        for j, machine in enumerate(spec.machines):
            if machine not in known:
                raise ConfigError(
                    f"unknown machine {machine!r}",
                    file=file,
                    path=f"rules.rules[{i}].machines[{j}]",
                )
    for machine in cfg.rules.machines:
        if machine not in known:
            raise ConfigError(
                "not a configured machine", file=file, path=f"rules.machines.{machine}"
            )


class Program:
    """The configured rules, built once and shared by every engine of a worker."""

    def __init__(self, cfg: RepsysConfig, *, file: str = "") -> None:
        check_scope(cfg, file)
        self.cfg = cfg
        self.facts = Facts(cfg.rules, list(cfg.machines), cfg.plant.timezone)
        self.rules: list[Rule] = [REGISTRY[spec.type](spec, self.facts) for spec in cfg.rules.rules]
        self.scopes = {spec.name: frozenset(spec.machines) for spec in cfg.rules.rules}
        self.texts: dict[str, RuleText] = {
            spec.name: rule_text(
                spec.category, DEFAULT_CATEGORY[spec.type], TYPE_TITLES.get(spec.type, "")
            )
            for spec in cfg.rules.rules
        }
        self.known = frozenset(m.id for m in cfg.machines)
        self._tables: dict[str, dict[str, tuple[Rule, ...]]] = {}

    def dispatch(self, machine_id: str) -> dict[str, tuple[Rule, ...]]:
        """Signal name → the rules of this machine that listen to it."""
        table = self._tables.get(machine_id)
        if table is not None:
            return table
        lists: dict[str, list[Rule]] = {}
        for rule in self.rules:
            scope = self.scopes[rule.name]
            if scope and machine_id not in scope:
                continue
            for name in rule.inputs:
                lists.setdefault(name, []).append(rule)
            if rule.sees_bad_quality:
                lists.setdefault(_BAD_KEY, []).append(rule)
            if rule.ticks:
                lists.setdefault(_TICK_KEY, []).append(rule)
        table = self._tables[machine_id] = {k: tuple(v) for k, v in lists.items()}
        return table


class Engine:
    """The machines of one partition and their anomaly lifecycles."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.deriver = Deriver(program.facts)
        self.ctx = Lifecycle(program.cfg.rules, program.facts, program.texts)
        self.machines: dict[str, MachineState] = {}
        self.dirty: set[str] = set()
        self.signals = 0
        self.ignored = 0
        self.rule_errors = 0

    @property
    def now(self) -> float:
        return self.ctx.now

    # --- state -------------------------------------------------------------------------

    def load(self, blobs: dict[str, str]) -> None:
        """Restore machines from a checkpoint (``HGETALL`` of the partition's state)."""
        for machine_id, blob in blobs.items():
            if machine_id.startswith("_"):
                continue
            m = MachineState.from_blob(machine_id, blob)
            m.dispatch = self.program.dispatch(machine_id)
            self.machines[machine_id] = m
            self.ctx.now = max(self.ctx.now, m.last_rx)

    def checkpoint(self) -> dict[str, str]:
        """Blobs of the machines changed since the last checkpoint."""
        out = {mid: self.machines[mid].to_blob() for mid in self.dirty}
        self.dirty.clear()
        return out

    def episodes_open(self) -> int:
        return sum(
            1 for m in self.machines.values() for a in m.alerts.values() if a.state == "firing"
        )

    def expect(self, machine_ids: Iterable[str]) -> None:
        """Machines this engine answers for before their first signal.

        A configured machine that never sends anything is a fault too (a wrong node id or
        topic, a collector that never reached it): once expected, it is ticked like any
        other, so ``no_data`` reports it. Replays and backtests do not call this: a
        recording that lacks a machine says nothing about the machine.
        """
        for machine_id in machine_ids:
            self._machine(machine_id)

    def restore(self, episodes: list[OpenEpisode]) -> int:
        """Machines without a checkpoint take their open episodes from the database; how many.

        Call after :meth:`load` and :meth:`expect`, with what ``rules.sink.load_episodes``
        read for the machines :meth:`load` did not restore. Occurrence numbers are not
        taken from the database: entries replayed from the pending list must compute the
        numbers they had (the sink moves a new episode past rows of another history).
        """
        restored = 0
        for ep in episodes:
            m = self._machine(ep.machine)
            if m is not None:
                self.ctx.restore(m, ep)
                self.dirty.add(m.id)
                restored += 1
        return restored

    def _machine(self, machine_id: str) -> MachineState | None:
        """The machine's state, new if it is known and has none yet."""
        m = self.machines.get(machine_id)
        if m is None and machine_id in self.program.known:
            m = self.machines[machine_id] = MachineState(machine_id)
            m.dispatch = self.program.dispatch(machine_id)
        return m

    def set_silences(self, silences: Iterable[ActiveSilence]) -> None:
        self.ctx.silences = list(silences)

    # --- evaluation --------------------------------------------------------------------

    def _failed(self, rule: Rule, m: MachineState, sig: Signal) -> None:
        # A rule bug must not stop the partition: it is logged and counted, and we go on.
        self.rule_errors += 1
        log.exception("rule_failed", rule=rule.name, machine=m.id, signal=sig.name)

    def _call(self, rule: Rule, m: MachineState, sig: Signal) -> None:
        try:
            rule.on_signal(m, sig, self.ctx)
        except Exception:  # see _failed
            self._failed(rule, m, sig)

    def _dispatch_derived(self, m: MachineState, sig: Signal, derived: list[Signal]) -> None:
        table = m.dispatch
        for d in derived:
            rules = table.get(d.name)
            if rules is not None:
                self.ctx.evaluations += len(rules)
                for rule in rules:
                    self._call(rule, m, d)
        if sig.name == "machining_event" and derived is not REDELIVERED:
            self.deriver.after(m, sig)

    def process(self, sig: Signal) -> None:
        """Evaluate one signal (stream order within a machine is the caller's promise)."""
        self.signals += 1
        m = self.machines.get(sig.machine)
        if m is None:
            if sig.machine not in self.program.known:
                self.ignored += 1
                return
            m = self.machines[sig.machine] = MachineState(sig.machine)
            m.dispatch = self.program.dispatch(sig.machine)
        ctx = self.ctx
        t = sig.receive_ts or sig.source_ts
        ctx.now = max(ctx.now, t)
        self.dirty.add(m.id)
        table = m.dispatch
        if sig.quality in _BAD:
            for rule in table.get(_BAD_KEY, ()):
                self._call(rule, m, sig)
            return
        m.last_rx = t
        m.last_src = sig.source_ts
        name = sig.name
        derived = self.deriver.before(m, sig) if name in DERIVES else None
        if derived is None:
            rules = table.get(name)
            if rules is not None:
                ctx.evaluations += len(rules)
                for rule in rules:
                    try:
                        rule.on_signal(m, sig, ctx)
                    except Exception:  # see _failed
                        self._failed(rule, m, sig)
        else:
            self._dispatch_derived(m, sig, derived)
        if m.alerts or m.group is not None:
            ctx.check(m)

    def tick(self, now: float) -> None:
        """Let time pass to ``now``: no data, ``for``, keep-firing, repeats, group waits."""
        ctx = self.ctx
        ctx.now = max(ctx.now, now)
        for m in self.machines.values():
            ticking = m.dispatch.get(_TICK_KEY, ())
            if not ticking and not m.alerts and m.group is None:
                continue
            ctx.changed = False
            for rule in ticking:
                try:
                    rule.on_tick(m, ctx)
                except Exception:  # see _call
                    self.rule_errors += 1
                    log.exception("rule_tick_failed", rule=rule.name, machine=m.id)
            if m.alerts or m.group is not None:
                ctx.check(m)
            if ctx.changed:
                self.dirty.add(m.id)

    def take(self) -> tuple[list[Action], list[Forecast]]:
        """The actions and forecasts produced since the last call."""
        return self.ctx.take()

    def remap(self, machine_id: str, fp: str, old: int, new: int) -> None:
        m = self.machines.get(machine_id)
        if m is not None:
            self.ctx.remap(m, fp, old, new)
            self.dirty.add(machine_id)

    def forget(self, machine_id: str, fp: str, occurrence: int) -> None:
        m = self.machines.get(machine_id)
        if m is not None:
            self.ctx.forget(m, fp, occurrence)
            self.dirty.add(machine_id)

    def stats(self) -> dict[tuple[str, str], int]:
        """Anomaly transitions by (rule, state) since the last call."""
        out = dict(self.ctx.stats)
        self.ctx.stats.clear()
        return out


def describe_state(engine: Engine) -> dict[str, Any]:
    """A summary of an engine's state (for ``rules backtest`` and debugging)."""
    return {
        "machines": len(engine.machines),
        "episodes_open": engine.episodes_open(),
        "signals": engine.signals,
        "ignored": engine.ignored,
    }
