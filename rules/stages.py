"""Noise control as a list of small stages, each with one job, run in order.

Modelled on Alertmanager's notify package (``notify/notify.go``): there a ``Stage`` is
``Exec(ctx, alerts) -> (ctx, alerts, err)``, a ``MultiStage`` runs its stages in order and
stops when no alert is left, and ``PipelineBuilder.New`` composes, per receiver, the
inhibition ``MuteStage``, the silence ``MuteStage`` and the receiver's wait, dedup and
retry stages. Here a stage is ``exec(ledger, machine, alerts) -> alerts``: it acts on the
alerts it is given and passes on those that go further. ``rules.alerts.Lifecycle`` builds
three pipelines and runs each alert through the one its state calls for:

- **firing** (a pending condition): :class:`PendingStage` (``for_s``) →
  :class:`InhibitStage` → :class:`SilenceStage` → :class:`FireStage` (episode identity) →
  :class:`GroupStage` (``group_wait_s``) → :class:`OpenStage` (episodes + one ticket);
- **open** (an episode whose ticket exists): :class:`KeepFiringStage`
  (``keep_firing_for_s``, resolving through :class:`ResolveStage`) → :class:`RepeatStage`
  (``repeat_interval_s``) → :class:`SilenceStage` → :class:`EscalateStage`;
- **group due**: :class:`GroupStage.due` → :class:`OpenStage`.

The one silence stage serves both (Alertmanager's silencer mutes firing alerts too). A
muted alert keeps the reason in ``Alert.held``, counted once per change of reason. Stages
keep no state of their own apart from configuration (and the active silences): what an
alert is lives in the machine's checkpointed state, so a worker taking a partition over
runs the same stages on the same state.

The :class:`Ledger` is what a stage may touch besides the machine: the engine clock, the
actions produced, the transition counters and the changed flag (the engine checkpoints
the machines it sets). ``Lifecycle`` is one; a test can pass a plain one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from core.config.rules import RuleSpec
from core.outbox import episode_ref
from rules.actions import Action, EpisodeDraft, Escalate, OpenEpisodes, Resolve
from rules.derive import Facts
from rules.state import Alert, MachineState, fingerprint
from rules.text import RuleText, describe, worst

#: Keys of a rule's config that are noise control, not the rule's own parameters.
_COMMON = frozenset(
    {
        "name",
        "type",
        "machines",
        "severity",
        "for_s",
        "keep_firing_for_s",
        "repeat_interval_s",
        "inhibit_in_modes",
        "category",
    }
)

#: Seconds an episode restored from the database (its checkpoint lost) stays open without
#: its condition being seen again: the rule has lost its own state too (a baseline, a
#: run of samples, the last run state) and needs time to see an ongoing condition again.
#: Longer than any default ``for_s`` plus a drift rule's baseline at one sample a second.
RESTORED_HOLD_S = 900.0
#: ``Alert.held`` of a restored episode until its condition is seen again.
RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class ActiveSilence:
    """A maintenance window: matching episodes neither open nor escalate during it."""

    machine: str | None
    rule: str | None
    starts: float
    ends: float

    def matches(self, machine: str, rule: str, now: float) -> bool:
        return (
            self.starts <= now < self.ends
            and (self.machine is None or self.machine == machine)
            and (self.rule is None or self.rule == rule)
        )


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def alert_key(alert: Alert) -> str:
    """The alert's key in ``MachineState.alerts``."""
    return f"{alert.rule}\x1f{alert.subject}"


class Ledger(Protocol):
    """What a stage may change besides the machine's state."""

    now: float  # the engine clock
    changed: bool  # set by every transition: the machine is checkpointed
    actions: list[Action]
    stats: dict[tuple[str, str], int]  # transitions by (rule, state), a defaultdict


class Stage(Protocol):
    """One job of noise control.

    Called by a :class:`MultiStage` (or the lifecycle) with some alerts of machine ``m``,
    every time the engine looks at them: after a signal of the machine and on every tick.
    It changes them (and ``m``), records what it did in the ledger, and returns the alerts
    that go on to the next stage. It raises nothing: its input is the engine's own state.
    """

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]: ...


class MultiStage:
    """Stages run in order; the alerts one returns are the next one's input (as
    Alertmanager's ``MultiStage``), and the run stops when none is left."""

    __slots__ = ("stages",)

    def __init__(self, *stages: Stage) -> None:
        self.stages = stages

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        for stage in self.stages:
            if not alerts:
                break
            alerts = stage.exec(led, m, alerts)
        return alerts


# --- the firing pipeline ---------------------------------------------------------------


class PendingStage:
    """Passes the pending alerts whose condition has held for their rule's ``for_s``."""

    def __init__(self, specs: Mapping[str, RuleSpec]) -> None:
        self.specs = specs

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        now = led.now
        due = [a for a in alerts if now - a.active_at >= self.specs[a.rule].for_s]
        if due:
            led.changed = True
        return due


class MuteStage:
    """Holds back the alerts :meth:`mutes` says, recording why in ``Alert.held``."""

    reason = ""

    def mutes(self, m: MachineState, rule: str, now: float) -> bool:
        raise NotImplementedError

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        out = []
        reason = self.reason
        for alert in alerts:
            if not self.mutes(m, alert.rule, led.now):
                out.append(alert)
            elif alert.held != reason:
                alert.held = reason
                led.changed = True
                led.stats[alert.rule, reason] += 1
        return out


class InhibitStage(MuteStage):
    """Mutes a rule while its machine is in one of the rule's ``inhibit_in_modes``, or
    while a rule that inhibits it (``no_data``'s ``inhibits``) fires on the machine
    (Alertmanager's ``inhibit_rules``)."""

    reason = "inhibited"

    def __init__(
        self, specs: Mapping[str, RuleSpec], inhibits: Mapping[str, frozenset[str] | None]
    ) -> None:
        self.specs = specs
        #: Inhibiting rule → the rules it mutes (None: every other rule).
        self.inhibits = inhibits

    def mutes(self, m: MachineState, rule: str, now: float) -> bool:
        if m.mode and m.mode in self.specs[rule].inhibit_in_modes:
            return True
        inhibits = self.inhibits
        for other in m.alerts.values():
            if other.state != "firing" or other.rule == rule or other.rule not in inhibits:
                continue
            targets = inhibits[other.rule]
            if targets is None or rule in targets:
                return True
        return False


class SilenceStage(MuteStage):
    """Mutes what an active silence (a maintenance window) matches."""

    reason = "silenced"

    def __init__(self) -> None:
        #: Set by the worker from the ``silences`` table (``Engine.set_silences``).
        self.silences: list[ActiveSilence] = []

    def mutes(self, m: MachineState, rule: str, now: float) -> bool:
        return any(s.matches(m.id, rule, now) for s in self.silences)


class FireStage:
    """Fires: the alert becomes an episode, identified by ``(fingerprint, occurrence)``
    with the occurrence counted in the machine's state (a replay computes the same)."""

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        now = led.now
        for alert in alerts:
            alert.held = ""
            alert.state = "firing"
            alert.fired_at = alert.last_notified = now
            fp = fingerprint(m.id, alert.rule, alert.subject)
            occurrence = m.occ.get(fp, 0) + 1
            m.occ[fp] = occurrence
            alert.fingerprint, alert.occurrence = fp, occurrence
            led.stats[alert.rule, "firing"] += 1
        return alerts


class GroupStage:
    """Episodes of one machine firing within ``group_wait_s`` share one ticket.

    ``MachineState.group`` is ``[due, alert keys]``: :meth:`exec` adds to it (passing the
    group on at once only when there is no wait); :meth:`due` hands the group over once
    its wait is over.
    """

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        keys = [alert_key(a) for a in alerts]
        if self.wait_s <= 0:
            m.group = [led.now, keys]
            return self.due(led, m)
        if m.group is None:
            m.group = [led.now + self.wait_s, keys]
        else:
            m.group[1].extend(keys)
        return []

    def due(self, led: Ledger, m: MachineState) -> list[Alert]:
        """The group's alerts not yet opened, once its wait is over (the group closes)."""
        group = m.group
        if group is None or led.now < group[0]:
            return []
        led.changed = True
        m.group = None
        alerts = m.alerts
        return [alerts[k] for k in group[1] if k in alerts and not alerts[k].opened]


class OpenStage:
    """Writes the episodes of a group and their one ticket (``OpenEpisodes``): the
    receiver at the end of the pipeline. An alert resolved while it waited in its group
    resolves now, after its episode was written."""

    def __init__(
        self,
        specs: Mapping[str, RuleSpec],
        facts: Facts,
        texts: Mapping[str, RuleText],
        kind: str,
        resolve: ResolveStage,
    ) -> None:
        self.specs = specs
        self.facts = facts
        #: Ticket category and title by rule name (``rules.engine.Program.texts``).
        self.texts = texts
        self.kind = kind
        self.resolve = resolve
        self.params = {
            name: {k: v for k, v in spec.model_dump(mode="json").items() if k not in _COMMON}
            for name, spec in specs.items()
        }

    def evidence(self, m: MachineState, alert: Alert) -> dict[str, Any]:
        spec = self.specs[alert.rule]
        # A rule's chart series goes top-level, where web/charts.py draws it.
        values = {k: v for k, v in alert.evidence.items() if k != "series"}
        series = {"series": alert.evidence["series"]} if "series" in alert.evidence else {}
        return {
            **series,
            "rule": alert.rule,
            "type": spec.type,
            "subject": alert.subject,
            "parameters": self.params[alert.rule],
            "values": values,
            "window": {
                "first_ts": alert.started,
                "last_ts": alert.last_src,
                "first": utc_iso(alert.started),
                "last": utc_iso(alert.last_src),
            },
            "machine_state": m.snapshot(),
        }

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        if not alerts:
            return alerts
        machine = self.facts.machines.get(m.id)
        drafts = []
        paragraphs = []
        categories = []
        titles = []
        for alert in alerts:
            spec = self.specs[alert.rule]
            evidence = self.evidence(m, alert)
            summary = f"{alert.headline}: {alert.detail}" if alert.detail else alert.headline
            drafts.append(
                EpisodeDraft(
                    fingerprint=alert.fingerprint,
                    occurrence=alert.occurrence,
                    machine=m.id,
                    rule=alert.rule,
                    rule_type=spec.type,
                    subject=alert.subject,
                    severity=spec.severity.value,
                    summary=summary[:512],
                    evidence=evidence,
                    started=alert.started,
                    last_seen=alert.last_src,
                )
            )
            text = self.texts[spec.name]
            categories.append(text.category)
            titles.append(text.title)
            paragraphs.append(
                describe(
                    headline=alert.headline,
                    detail=alert.detail,
                    machine=machine,
                    machine_id=m.id,
                    evidence=evidence,
                    zone=self.facts.shifts.zone,
                )
            )
        first = alerts[0]
        if len(alerts) == 1:
            title = f"{titles[0]}: {first.headline}"
        else:
            title = f"{len(alerts)} issues on {self.facts.machine_name(m.id)}: {first.headline}"
            title += f" (+{len(alerts) - 1} more)"
        description = "\n\n".join(paragraphs)
        description += f"\n\nRepSys episode {first.fingerprint}#{first.occurrence}."
        led.actions.append(
            OpenEpisodes(
                machine=m.id,
                episodes=tuple(drafts),
                title=title,
                description=description,
                severity=worst([d.severity for d in drafts]),
                category=categories[0],
                kind=self.kind,
                reporter="repsys-rules",
                at=led.now,
            )
        )
        ref = episode_ref(first.fingerprint, first.occurrence)
        for alert in alerts:
            alert.opened = True
            alert.ticket_ref = ref
            if alert.resolve_at is not None:
                self.resolve.exec(led, m, [alert])
        return alerts


# --- the open pipeline -----------------------------------------------------------------


class ResolveStage:
    """Resolves: the episode ends (``Resolve``); one still waiting in its group is marked
    and resolved once its episode is written (:class:`OpenStage`)."""

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        for alert in alerts:
            led.changed = True
            if not alert.opened:
                alert.resolve_at = led.now
                continue
            led.actions.append(
                Resolve(
                    machine=m.id,
                    fingerprint=alert.fingerprint,
                    occurrence=alert.occurrence,
                    ticket_ref=alert.ticket_ref,
                    repeats=alert.repeats,
                    last_seen=alert.last_src,
                    at=led.now,
                )
            )
            led.stats[alert.rule, "resolved"] += 1
            del m.alerts[alert_key(alert)]
        return []


class KeepFiringStage:
    """Resolves an episode ``keep_firing_for_s`` after its condition cleared; passes on
    the rest. A restored episode (its checkpoint lost) is held as cleared until
    ``max(keep_firing_for_s, for_s, RESTORED_HOLD_S)`` after this worker's first look."""

    def __init__(self, specs: Mapping[str, RuleSpec], resolve: ResolveStage) -> None:
        self.specs = specs
        self.resolve = resolve

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        now = led.now
        out = []
        for alert in alerts:
            spec = self.specs[alert.rule]
            if alert.held == RESTORED and alert.cleared_at is None and not alert.active:
                # The hold runs from the engine's first moment after the take (the
                # checkpoint's clock was lost with it), and ends with a resolution
                # keep_firing_for_s later, as for a cleared condition.
                hold = max(spec.keep_firing_for_s, spec.for_s, RESTORED_HOLD_S)
                alert.cleared_at = now + hold - spec.keep_firing_for_s
                led.changed = True
            if alert.cleared_at is not None and now - alert.cleared_at >= spec.keep_firing_for_s:
                self.resolve.exec(led, m, [alert])
            else:
                out.append(alert)
        return out


class RepeatStage:
    """Passes the episodes due an escalation: ``repeat_interval_s`` since the last
    notification, and the anomaly still holding or recurred since (Alertmanager's dedup
    stage, which lets a group through again once its repeat interval is over)."""

    def __init__(self, specs: Mapping[str, RuleSpec]) -> None:
        self.specs = specs

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        now = led.now
        out = []
        for alert in alerts:
            interval = self.specs[alert.rule].repeat_interval_s
            if (
                interval is not None
                and now - alert.last_notified >= interval
                and (alert.active or alert.repeats > alert.notified_repeats)
            ):
                out.append(alert)
        return out


class EscalateStage:
    """Escalates the episode's ticket: level + 1, an ``Escalate`` ticket event."""

    def exec(self, led: Ledger, m: MachineState, alerts: list[Alert]) -> list[Alert]:
        for alert in alerts:
            alert.held = ""
            led.changed = True
            alert.level += 1
            alert.last_notified = led.now
            alert.notified_repeats = alert.repeats
            led.stats[alert.rule, "escalated"] += 1
            led.actions.append(
                Escalate(
                    machine=m.id,
                    fingerprint=alert.fingerprint,
                    occurrence=alert.occurrence,
                    ticket_ref=alert.ticket_ref,
                    level=alert.level,
                    repeats=alert.repeats,
                    last_seen=alert.last_src,
                    at=led.now,
                    detail=f"{alert.headline}: still happening ({alert.repeats} repeats); "
                    f"{alert.detail}",
                )
            )
        return alerts
