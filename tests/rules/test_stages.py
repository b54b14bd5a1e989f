"""Each noise-control stage at its seam (``rules/stages.py``), with a plain ledger.

The golden cases prove the composed lifecycle; these pin what each stage does alone:
what it passes on, what it records, and the order the lifecycle runs them in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.config import parse_config
from core.outbox import episode_ref
from rules.actions import Action, Escalate, OpenEpisodes, Resolve
from rules.alerts import Lifecycle
from rules.engine import Program
from rules.stages import (
    RESTORED,
    RESTORED_HOLD_S,
    ActiveSilence,
    EscalateStage,
    FireStage,
    GroupStage,
    InhibitStage,
    KeepFiringStage,
    MultiStage,
    OpenStage,
    PendingStage,
    RepeatStage,
    ResolveStage,
    SilenceStage,
    alert_key,
)
from rules.state import Alert, MachineState, fingerprint
from tests.conftest import TEST_MACHINES

RULES: list[dict[str, Any]] = [
    {"name": "hot", "type": "threshold", "signal": "spindle_load", "above": 130, "for_s": 30,
     "keep_firing_for_s": 60, "repeat_interval_s": 600, "inhibit_in_modes": ["setup"]},
    {"name": "worn", "type": "tool_life_short", "repeat_interval_s": None},
    {"name": "quiet", "type": "no_data", "timeout_s": 300, "inhibits": ["hot"]},
]  # fmt: skip


@dataclass
class Book:
    """A plain :class:`rules.stages.Ledger`."""

    now: float = 1000.0
    changed: bool = False
    actions: list[Action] = field(default_factory=list)
    stats: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


@pytest.fixture
def program() -> Program:
    cfg = parse_config(
        {
            "machines": TEST_MACHINES,
            "redis": {"url": "redis://localhost:1"},
            "database": {"url": "sqlite://"},
            "rules": {"group_wait_s": 60, "rules": RULES},
        },
        file="<test>",
    )
    return Program(cfg)


@pytest.fixture
def specs(program: Program) -> dict[str, Any]:
    return {r.name: r for r in program.cfg.rules.rules}


def alert(rule: str = "hot", subject: str = "", **kw: Any) -> Alert:
    base: dict[str, Any] = {
        "state": "pending", "active": True, "active_at": 900.0, "started": 900.0,
        "last_src": 990.0, "headline": f"{rule} on {subject or 'the machine'}",
        "detail": "load 140 %", "evidence": {"load": 140},
    }  # fmt: skip
    return Alert(rule=rule, subject=subject, **{**base, **kw})


def machine(*alerts: Alert, mode: str = "") -> MachineState:
    m = MachineState("cnc101")
    m.mode = mode
    for a in alerts:
        m.alerts[alert_key(a)] = a
    return m


def test_pending_passes_an_alert_once_its_for_s_held(specs: dict[str, Any]) -> None:
    stage, a = PendingStage(specs), alert(active_at=900.0)
    early = Book(now=929.0)
    assert stage.exec(early, machine(a), [a]) == []
    assert early.changed is False
    due = Book(now=930.0)
    assert stage.exec(due, machine(a), [a]) == [a]
    assert due.changed is True


def test_inhibit_mutes_in_an_inhibiting_mode_and_counts_it_once(specs: dict[str, Any]) -> None:
    stage, a = InhibitStage(specs, {"quiet": frozenset({"hot"})}), alert()
    book, m = Book(), machine(a, mode="setup")
    assert stage.exec(book, m, [a]) == []
    assert stage.exec(book, m, [a]) == []
    assert (a.held, book.stats) == ("inhibited", {("hot", "inhibited"): 1})
    m.mode = "processing"
    assert stage.exec(book, m, [a]) == [a]


def test_inhibit_mutes_the_targets_of_a_firing_inhibiting_rule(specs: dict[str, Any]) -> None:
    stage = InhibitStage(specs, {"quiet": frozenset({"hot"})})
    hot, worn, quiet = alert("hot"), alert("worn", "T1"), alert("quiet", state="pending")
    m = machine(hot, worn, quiet)
    assert stage.exec(Book(), m, [hot, worn]) == [hot, worn]  # the no-data rule only pends
    quiet.state = "firing"
    assert stage.exec(Book(), m, [hot, worn]) == [worn]
    every = InhibitStage(specs, {"quiet": None})
    assert every.exec(Book(), m, [hot, worn]) == []


def test_silence_mutes_what_an_active_window_matches() -> None:
    stage, a = SilenceStage(), alert()
    stage.silences = [ActiveSilence("cnc101", "hot", 500.0, 1500.0)]
    book = Book(now=1000.0)
    assert stage.exec(book, machine(a), [a]) == []
    assert (a.held, book.changed, book.stats) == ("silenced", True, {("hot", "silenced"): 1})
    assert stage.exec(Book(now=1500.0), machine(a), [a]) == [a]  # the window ended
    stage.silences = [ActiveSilence("cnc102", None, 500.0, 1500.0)]
    assert stage.exec(Book(now=1000.0), machine(a), [a]) == [a]


def test_fire_counts_the_occurrence_in_the_machines_state() -> None:
    first, second = alert(), alert()
    m = machine(first)
    book = Book(now=1000.0)
    assert FireStage().exec(book, m, [first]) == [first]
    fp = fingerprint("cnc101", "hot", "")
    assert (first.state, first.fingerprint, first.occurrence) == ("firing", fp, 1)
    assert (first.fired_at, first.last_notified, first.held) == (1000.0, 1000.0, "")
    FireStage().exec(book, m, [second])
    assert (second.occurrence, m.occ[fp], book.stats[("hot", "firing")]) == (2, 2, 2)


def test_group_holds_alerts_for_its_wait_then_hands_the_unopened_over() -> None:
    stage = GroupStage(60.0)
    a, b, c = alert("hot"), alert("worn", "T1"), alert("worn", "T2", opened=True)
    m = machine(a, b, c)
    assert stage.exec(Book(now=1000.0), m, [a]) == []
    assert stage.exec(Book(now=1010.0), m, [b, c]) == []
    assert m.group == [1060.0, [alert_key(a), alert_key(b), alert_key(c)]]
    assert stage.due(Book(now=1059.0), m) == []
    book = Book(now=1060.0)
    assert stage.due(book, m) == [a, b]
    assert m.group is None
    assert book.changed is True
    now = GroupStage(0.0)
    assert now.exec(Book(), machine(a), [a]) == [a]


def test_open_writes_one_ticket_for_the_group_then_resolves_the_cleared(
    program: Program, specs: dict[str, Any]
) -> None:
    resolve = ResolveStage()
    stage = OpenStage(specs, program.facts, program.texts, "maintenance_work_request", resolve)
    a = alert("hot", fingerprint="f1", occurrence=1, state="firing")
    b = alert("worn", "T1", fingerprint="f2", occurrence=3, state="firing", resolve_at=1000.0)
    m = machine(a, b)
    book = Book(now=1000.0)
    assert stage.exec(book, m, [a, b]) == [a, b]
    opened, resolved = book.actions
    assert isinstance(opened, OpenEpisodes) and isinstance(resolved, Resolve)
    assert [d.fingerprint for d in opened.episodes] == ["f1", "f2"]
    assert opened.title.startswith("2 issues on ") and opened.title.endswith(" (+1 more)")
    parameters = opened.episodes[0].evidence["parameters"]
    assert parameters["above"] == 130 and "for_s" not in parameters  # the rule's own only
    assert (a.opened, a.ticket_ref, b.ticket_ref) == (True, episode_ref("f1", 1), a.ticket_ref)
    assert (resolved.fingerprint, list(m.alerts)) == ("f2", [alert_key(a)])


def test_resolve_waits_for_the_group_of_an_unwritten_episode() -> None:
    waiting, written = alert(state="firing"), alert("worn", "T1", state="firing", opened=True)
    m = machine(waiting, written)
    book = Book(now=1000.0)
    assert ResolveStage().exec(book, m, [waiting, written]) == []
    assert (waiting.resolve_at, alert_key(waiting) in m.alerts) == (1000.0, True)
    assert [type(x) for x in book.actions] == [Resolve]
    assert alert_key(written) not in m.alerts
    assert book.stats == {("worn", "resolved"): 1}


def test_keep_firing_resolves_after_its_time_and_holds_a_restored_episode(
    specs: dict[str, Any],
) -> None:
    stage = KeepFiringStage(specs, ResolveStage())
    cleared = alert(state="firing", opened=True, active=False, cleared_at=940.0)
    m = machine(cleared)
    assert stage.exec(Book(now=999.0), m, [cleared]) == [cleared]
    book = Book(now=1000.0)
    assert stage.exec(book, m, [cleared]) == []
    assert [type(x) for x in book.actions] == [Resolve]
    restored = alert(state="firing", opened=True, active=False, held=RESTORED)
    book = Book(now=1000.0)
    assert stage.exec(book, machine(restored), [restored]) == [restored]
    assert restored.cleared_at == 1000.0 + RESTORED_HOLD_S - 60.0
    assert book.changed is True


def test_repeat_passes_an_episode_due_and_still_recurring(specs: dict[str, Any]) -> None:
    stage = RepeatStage(specs)
    active = alert(state="firing", opened=True, last_notified=400.0)
    quiet = alert(state="firing", opened=True, active=False, last_notified=400.0)
    recurred = alert(state="firing", opened=True, active=False, last_notified=400.0, repeats=2)
    m = machine(active)
    assert stage.exec(Book(now=999.0), m, [active, quiet, recurred]) == []
    assert stage.exec(Book(now=1000.0), m, [active, quiet, recurred]) == [active, recurred]
    never = alert("worn", "T1", state="firing", opened=True, last_notified=0.0)
    assert stage.exec(Book(now=1e9), m, [never]) == []  # no repeat_interval_s


def test_escalate_raises_the_level_and_files_the_event() -> None:
    a = alert(state="firing", opened=True, held="silenced", level=1, repeats=3,
              fingerprint="f1", occurrence=2, ticket_ref="r")  # fmt: skip
    book = Book(now=1000.0)
    assert EscalateStage().exec(book, machine(a), [a]) == [a]
    (event,) = book.actions
    assert isinstance(event, Escalate)
    assert (event.level, event.repeats, a.level, a.held, a.notified_repeats) == (2, 3, 2, "", 3)
    assert event.detail == "hot on the machine: still happening (3 repeats); load 140 %"


def test_multistage_stops_when_no_alert_is_left() -> None:
    seen: list[str] = []

    class Record:
        def __init__(self, name: str, passes: bool) -> None:
            self.name, self.passes = name, passes

        def exec(self, led: Any, m: MachineState, alerts: list[Alert]) -> list[Alert]:
            seen.append(self.name)
            return alerts if self.passes else []

    a = alert()
    pipeline = MultiStage(Record("one", True), Record("two", False), Record("three", True))
    assert pipeline.exec(Book(), machine(a), [a]) == []
    assert seen == ["one", "two"]


def test_the_lifecycle_runs_the_stages_in_alertmanagers_order(program: Program) -> None:
    lc = Lifecycle(program.cfg.rules, program.facts, program.texts)
    assert [type(s).__name__ for s in lc.firing.stages] == [
        "PendingStage", "InhibitStage", "SilenceStage", "FireStage", "GroupStage", "OpenStage",
    ]  # fmt: skip
    assert [type(s).__name__ for s in lc.opened.stages] == [
        "KeepFiringStage", "RepeatStage", "SilenceStage", "EscalateStage",
    ]  # fmt: skip
    assert lc.firing.stages[2] is lc.opened.stages[2]  # one set of silences for both
    # Inhibition before silences: an alert both inhibited and silenced is held inhibited.
    lc.silences = [ActiveSilence(None, None, 0.0, 1e12)]
    m = MachineState("cnc101")
    m.mode = "setup"
    lc.now = 1000.0
    lc.active(m, "hot", "", 1000.0, headline="hot", detail="", values={})
    lc.now = 1030.0
    lc.check(m)
    assert m.alerts[alert_key(alert())].held == "inhibited"
    assert lc.take() == ([], [])
