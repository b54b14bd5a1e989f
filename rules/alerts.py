"""Noise control modelled on Alertmanager: pending, firing, resolved; groups; inhibition.

Rules only say what they see: a condition became true (``active``), became false
(``inactive``), or a one-off anomaly happened (``event``). :class:`Lifecycle` decides what
that means for tickets:

- a condition must hold ``for_s`` (pending) before it fires; a pending condition that
  clears is forgotten;
- a firing episode stays open ``keep_firing_for_s`` after its condition cleared; a
  recurrence within that time is a repeat of the same episode, not a new one;
- while an episode keeps recurring, every ``repeat_interval_s`` its ticket is escalated
  (level + 1, a ticket event) instead of a new ticket being filed;
- episodes of one machine firing within ``group_wait_s`` share one ticket;
- an episode does not open while its machine is in an inhibiting operation mode (setup,
  maintenance), while an inhibiting rule (no data) fires on the machine, or while a
  silence matches; it opens when that ends if its condition still holds. A silence also
  holds back the escalations of an episode already open when it began.

Each of those jobs is a stage of ``rules/stages.py`` (pending, inhibit, silence, fire,
group, open; keep firing, repeat, escalate, resolve), composed here into pipelines as
Alertmanager composes its ``MultiStage``; this class is what rules and the engine call.

Episode identity is ``(fingerprint, occurrence)``, the occurrence counted in the machine's
checkpointed state, so a replay recomputes the same identity (see ``rules/sink.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from core.config.rules import NoDataRule, RulesConfig
from core.outbox import episode_ref
from rules.actions import Action, Forecast, OpenEpisode
from rules.derive import Facts
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
    utc_iso,
)
from rules.state import Alert, MachineState
from rules.text import RuleText

__all__ = ["RESTORED", "RESTORED_HOLD_S", "ActiveSilence", "Lifecycle", "utc_iso"]


class Lifecycle:
    """The anomaly lifecycle of every machine of one engine; collects actions.

    What rules call (``active``, ``inactive``, ``event``, ``forecast``) and what the
    engine calls (``check``, ``restore``, ``remap``, ``forget``, ``take``); the noise
    control itself is the stages of ``rules/stages.py``, composed here. It is also the
    stages' :class:`rules.stages.Ledger`.
    """

    def __init__(
        self, cfg: RulesConfig, facts: Facts, texts: Mapping[str, RuleText] | None = None
    ) -> None:
        self.specs = {r.name: r for r in cfg.rules}
        # Which rules each no-data rule mutes (Alertmanager's inhibit_rules).
        inhibits: dict[str, frozenset[str] | None] = {
            r.name: (frozenset(r.inhibits) if r.inhibits is not None else None)
            for r in cfg.rules
            if isinstance(r, NoDataRule)
        }
        self.silence = SilenceStage()
        self.resolve = ResolveStage()
        self.group = GroupStage(cfg.group_wait_s)
        self.open = OpenStage(self.specs, facts, texts or {}, cfg.ticket_kind, self.resolve)
        #: A pending alert, each time its condition is seen or time passes.
        self.firing = MultiStage(
            PendingStage(self.specs),
            InhibitStage(self.specs, inhibits),
            self.silence,
            FireStage(),
            self.group,
            self.open,
        )
        #: An alert whose episode is written, each time its machine is looked at.
        self.opened = MultiStage(
            KeepFiringStage(self.specs, self.resolve),
            RepeatStage(self.specs),
            self.silence,
            EscalateStage(),
        )
        self.now = 0.0
        self.actions: list[Action] = []
        self.forecasts: dict[tuple[str, str], Forecast] = {}
        self.stats: dict[tuple[str, str], int] = defaultdict(int)
        #: Derived cycles a rule left out, by (rule, reason): glitch, stop, alarm, ...
        self.excluded: dict[tuple[str, str], int] = defaultdict(int)
        self.evaluations = 0
        #: Set by every transition, so the engine knows which machines to checkpoint.
        self.changed = False

    @property
    def silences(self) -> list[ActiveSilence]:
        return self.silence.silences

    @silences.setter
    def silences(self, silences: list[ActiveSilence]) -> None:
        self.silence.silences = silences

    # --- what rules call ---------------------------------------------------------------

    def active(
        self,
        m: MachineState,
        rule: str,
        subject: str,
        src: float,
        *,
        headline: str,
        detail: str,
        values: dict[str, Any],
    ) -> None:
        """The rule's condition holds (from now, or still)."""
        self.changed = True
        key = f"{rule}\x1f{subject}"
        alert = m.alerts.get(key)
        if alert is None:
            alert = Alert(
                rule=rule,
                subject=subject,
                state="pending",
                active=True,
                active_at=self.now,
                started=src,
                last_src=src,
                headline=headline,
                detail=detail,
                evidence=values,
            )
            m.alerts[key] = alert
            self.stats[rule, "pending"] += 1
            self.firing.exec(self, m, [alert])
            return
        alert.last_src = src
        if alert.state == "pending":
            alert.headline, alert.detail, alert.evidence = headline, detail, values
            self.firing.exec(self, m, [alert])
            return
        if not alert.active:
            alert.active = True
            alert.cleared_at = None
            alert.resolve_at = None
            if alert.held == RESTORED:
                alert.held = ""
                if abs(src - alert.started) < 0.001:
                    # The anomaly that opened it, replayed: the worker that wrote the
                    # episode died before its checkpoint. Not a repeat.
                    return
            alert.repeats += 1
            alert.detail, alert.evidence = detail, values
            self.stats[rule, "repeated"] += 1

    def inactive(self, m: MachineState, rule: str, subject: str) -> None:
        """The rule's condition no longer holds."""
        key = f"{rule}\x1f{subject}"
        alert = m.alerts.get(key)
        if alert is None or not alert.active:
            return
        self.changed = True
        alert.active = False
        if alert.state == "pending":
            del m.alerts[key]
            return
        alert.cleared_at = self.now
        if self.specs[rule].keep_firing_for_s <= 0:
            self.resolve.exec(self, m, [alert])

    def event(
        self,
        m: MachineState,
        rule: str,
        subject: str,
        src: float,
        *,
        headline: str,
        detail: str,
        values: dict[str, Any],
    ) -> None:
        """A one-off anomaly: fires at once (unless held), then counts as cleared."""
        self.active(m, rule, subject, src, headline=headline, detail=detail, values=values)
        self.inactive(m, rule, subject)

    def forecast(self, m: MachineState, tool: str, minutes: int | None, at: float) -> None:
        self.changed = True
        self.forecasts[m.id, tool] = Forecast(m.id, tool, minutes, at)

    # --- time --------------------------------------------------------------------------

    def check(self, m: MachineState) -> None:
        """Time-based transitions of one machine's alerts at ``self.now``.

        Each alert goes through the pipeline of its state, one alert at a time in the
        machine's order (the order of the actions is part of the behaviour); then the
        machine's group, if its wait is over.
        """
        specs = self.specs
        for key, alert in list(m.alerts.items()):
            if alert.rule not in specs:  # the rule was removed from the configuration
                del m.alerts[key]
            elif alert.state == "pending":
                self.firing.exec(self, m, [alert])
            elif alert.opened:
                self.opened.exec(self, m, [alert])
        if m.group is not None and self.now >= m.group[0]:
            self.open.exec(self, m, self.group.due(self, m))

    def restore(self, m: MachineState, ep: OpenEpisode) -> None:
        """Go on with an episode the database holds as firing (the checkpoint was lost).

        It comes back firing but not seen: a recurrence of its condition within
        ``max(keep_firing_for_s, for_s, RESTORED_HOLD_S)`` of the engine's next moment is a
        repeat of it (or, at the same source time, the anomaly that opened it, replayed),
        not a second episode and ticket; otherwise it resolves then.
        """
        spec = self.specs.get(ep.rule)
        if spec is None:  # the rule was removed from the configuration
            return
        self.changed = True
        headline, _, detail = ep.summary.partition(": ")
        m.alerts[f"{ep.rule}\x1f{ep.subject}"] = Alert(
            rule=ep.rule,
            subject=ep.subject,
            state="firing",
            active=False,
            active_at=ep.started,
            started=ep.started,
            last_src=ep.last_seen,
            headline=headline,
            detail=detail,
            evidence=ep.values,
            cleared_at=None,  # the hold starts at its first check (see check())
            fingerprint=ep.fingerprint,
            occurrence=ep.occurrence,
            opened=True,
            fired_at=ep.started,
            last_notified=ep.last_seen,
            level=ep.level,
            repeats=ep.repeats,
            notified_repeats=ep.repeats,
            ticket_ref=ep.ticket_ref,
            held=RESTORED,
        )
        m.occ[ep.fingerprint] = max(m.occ.get(ep.fingerprint, 0), ep.occurrence)
        self.stats[ep.rule, "restored"] += 1

    def remap(self, m: MachineState, fp: str, old: int, new: int) -> None:
        """The database already had ``(fp, old)`` from another history: use ``new``."""
        m.occ[fp] = max(m.occ.get(fp, 0), new)
        old_ref, new_ref = episode_ref(fp, old), episode_ref(fp, new)
        for alert in m.alerts.values():
            if alert.fingerprint == fp and alert.occurrence == old:
                alert.occurrence = new
            if alert.ticket_ref == old_ref:
                alert.ticket_ref = new_ref

    def forget(self, m: MachineState, fp: str, occurrence: int) -> None:
        """End an episode whose ticket was closed outside (the database already says so)."""
        for key, alert in list(m.alerts.items()):
            if alert.fingerprint == fp and alert.occurrence == occurrence:
                self.changed = True
                self.stats[alert.rule, "closed"] += 1
                del m.alerts[key]

    def take(self) -> tuple[list[Action], list[Forecast]]:
        actions, self.actions = self.actions, []
        forecasts = list(self.forecasts.values())
        self.forecasts = {}
        return actions, forecasts
