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

Episode identity is ``(fingerprint, occurrence)``, the occurrence counted in the machine's
checkpointed state, so a replay recomputes the same identity (see ``rules/sink.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.config.rules import NoDataRule, RulesConfig
from core.outbox import episode_ref
from rules.actions import (
    Action,
    EpisodeDraft,
    Escalate,
    Forecast,
    OpenEpisode,
    OpenEpisodes,
    Resolve,
)
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


class Lifecycle:
    """The anomaly lifecycle of every machine of one engine; collects actions."""

    def __init__(
        self, cfg: RulesConfig, facts: Facts, texts: Mapping[str, RuleText] | None = None
    ) -> None:
        self.facts = facts
        #: Ticket category and title by rule name (``rules.engine.Program.texts``).
        self.texts: Mapping[str, RuleText] = texts or {}
        self.group_wait = cfg.group_wait_s
        self.kind = cfg.ticket_kind
        self.specs = {r.name: r for r in cfg.rules}
        self.params = {
            r.name: {k: v for k, v in r.model_dump(mode="json").items() if k not in _COMMON}
            for r in cfg.rules
        }
        # Which rules each no-data rule mutes (Alertmanager's inhibit_rules).
        self.inhibits: dict[str, frozenset[str] | None] = {
            r.name: (frozenset(r.inhibits) if r.inhibits is not None else None)
            for r in cfg.rules
            if isinstance(r, NoDataRule)
        }
        self.silences: list[ActiveSilence] = []
        self.now = 0.0
        self.actions: list[Action] = []
        self.forecasts: dict[tuple[str, str], Forecast] = {}
        self.stats: dict[tuple[str, str], int] = defaultdict(int)
        #: Derived cycles a rule left out, by (rule, reason): glitch, stop, alarm, ...
        self.excluded: dict[tuple[str, str], int] = defaultdict(int)
        self.evaluations = 0
        #: Set by every transition, so the engine knows which machines to checkpoint.
        self.changed = False

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
            self._try_fire(m, alert)
            return
        alert.last_src = src
        if alert.state == "pending":
            alert.headline, alert.detail, alert.evidence = headline, detail, values
            self._try_fire(m, alert)
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
            self._resolve(m, key, alert)

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
        """Time-based transitions of one machine's alerts at ``self.now``."""
        now = self.now
        for key, alert in list(m.alerts.items()):
            spec = self.specs.get(alert.rule)
            if spec is None:  # the rule was removed from the configuration
                del m.alerts[key]
                continue
            if alert.state == "pending":
                self._try_fire(m, alert)
                continue
            if not alert.opened:
                continue
            if alert.held == RESTORED and alert.cleared_at is None and not alert.active:
                # Restored from the database: the hold runs from the engine's first moment
                # after the take (the checkpoint's clock was lost with it), and ends with a
                # resolution keep_firing_for_s later, as for a cleared condition.
                hold = max(spec.keep_firing_for_s, spec.for_s, RESTORED_HOLD_S)
                alert.cleared_at = now + hold - spec.keep_firing_for_s
                self.changed = True
            if alert.cleared_at is not None and now - alert.cleared_at >= spec.keep_firing_for_s:
                self._resolve(m, key, alert)
                continue
            interval = spec.repeat_interval_s
            if (
                interval is not None
                and now - alert.last_notified >= interval
                and (alert.active or alert.repeats > alert.notified_repeats)
            ):
                # A silence also mutes an episode that was already open (Alertmanager
                # mutes firing alerts): no escalation during the window; a due one follows
                # at its end if the anomaly still recurs.
                if self._silenced(m, alert.rule):
                    if alert.held != "silenced":
                        alert.held = "silenced"
                        self.changed = True
                        self.stats[alert.rule, "silenced"] += 1
                    continue
                alert.held = ""
                self._escalate(m, alert)
        if m.group is not None and now >= m.group[0]:
            self._flush(m)

    # --- transitions -------------------------------------------------------------------

    def _held(self, m: MachineState, rule: str) -> str:
        spec = self.specs[rule]
        if m.mode and m.mode in spec.inhibit_in_modes:
            return "inhibited"
        for other in m.alerts.values():
            if other.state != "firing" or other.rule == rule or other.rule not in self.inhibits:
                continue
            targets = self.inhibits[other.rule]
            if targets is None or rule in targets:
                return "inhibited"
        return "silenced" if self._silenced(m, rule) else ""

    def _silenced(self, m: MachineState, rule: str) -> bool:
        return any(s.matches(m.id, rule, self.now) for s in self.silences)

    def _try_fire(self, m: MachineState, alert: Alert) -> None:
        spec = self.specs[alert.rule]
        if self.now - alert.active_at < spec.for_s:
            return
        self.changed = True
        held = self._held(m, alert.rule)
        if held:
            if alert.held != held:
                alert.held = held
                self.stats[alert.rule, held] += 1
            return
        alert.held = ""
        alert.state = "firing"
        alert.fired_at = alert.last_notified = self.now
        fp = fingerprint(m.id, alert.rule, alert.subject)
        occurrence = m.occ.get(fp, 0) + 1
        m.occ[fp] = occurrence
        alert.fingerprint, alert.occurrence = fp, occurrence
        self.stats[alert.rule, "firing"] += 1
        key = f"{alert.rule}\x1f{alert.subject}"
        if self.group_wait <= 0:
            m.group = [self.now, [key]]
            self._flush(m)
        elif m.group is None:
            m.group = [self.now + self.group_wait, [key]]
        else:
            m.group[1].append(key)

    def _resolve(self, m: MachineState, key: str, alert: Alert) -> None:
        self.changed = True
        if not alert.opened:
            alert.resolve_at = self.now  # written with its group, then resolved
            return
        self.actions.append(
            Resolve(
                machine=m.id,
                fingerprint=alert.fingerprint,
                occurrence=alert.occurrence,
                ticket_ref=alert.ticket_ref,
                repeats=alert.repeats,
                last_seen=alert.last_src,
                at=self.now,
            )
        )
        self.stats[alert.rule, "resolved"] += 1
        del m.alerts[key]

    def _escalate(self, m: MachineState, alert: Alert) -> None:
        self.changed = True
        alert.level += 1
        alert.last_notified = self.now
        alert.notified_repeats = alert.repeats
        self.stats[alert.rule, "escalated"] += 1
        self.actions.append(
            Escalate(
                machine=m.id,
                fingerprint=alert.fingerprint,
                occurrence=alert.occurrence,
                ticket_ref=alert.ticket_ref,
                level=alert.level,
                repeats=alert.repeats,
                last_seen=alert.last_src,
                at=self.now,
                detail=f"{alert.headline}: still happening ({alert.repeats} repeats); "
                f"{alert.detail}",
            )
        )

    def _evidence(self, m: MachineState, alert: Alert) -> dict[str, Any]:
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

    def _flush(self, m: MachineState) -> None:
        assert m.group is not None
        self.changed = True
        keys = m.group[1]
        m.group = None
        alerts = [m.alerts[k] for k in keys if k in m.alerts and not m.alerts[k].opened]
        if not alerts:
            return
        machine = self.facts.machines.get(m.id)
        drafts = []
        paragraphs = []
        categories = []
        titles = []
        for alert in alerts:
            spec = self.specs[alert.rule]
            evidence = self._evidence(m, alert)
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
        action = OpenEpisodes(
            machine=m.id,
            episodes=tuple(drafts),
            title=title,
            description=description,
            severity=worst([d.severity for d in drafts]),
            category=categories[0],
            kind=self.kind,
            reporter="repsys-rules",
            at=self.now,
        )
        self.actions.append(action)
        ref = episode_ref(first.fingerprint, first.occurrence)
        for alert in alerts:
            alert.opened = True
            alert.ticket_ref = ref
            if alert.resolve_at is not None:
                key = f"{alert.rule}\x1f{alert.subject}"
                self._resolve(m, key, alert)

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
