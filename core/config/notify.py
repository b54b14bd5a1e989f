"""Configuration section ``notify:``: working calendar, escalation policy, routing, receivers.

Modelled on Alertmanager's configuration (``route``, ``receivers``, ``inhibit_rules``) so
an operator who knows one reads the other. What is routed is a ticket *event* (filed,
escalated, recurred, cleared, and RepSys's own operations alerts), carrying the labels of
``ROUTE_LABELS``. Every cross reference (a route's receiver, the admin receiver) is checked
at load and reported at its key path.
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from core.config.base import OptionalSecret, StrictModel

#: Labels a ticket event carries, and so what matchers, ``group_by`` and ``equal`` may name.
ROUTE_LABELS = (
    "machine",
    "cell",
    "building",
    "workcenter",
    "rule",
    "rule_type",
    "category",
    "severity",
    "level",
    "shift",
    "event",
    "kind",
    "source",
    "alertname",
)

#: Events a ticket goes through that can be routed (``event`` label).
EVENTS = ("filed", "escalated", "recurred", "cleared", "ops")

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MATCHER = re.compile(r"^\s*([a-z_]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$")

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_matcher(text: str) -> tuple[str, str, str]:
    """``'severity=~high|medium'`` → ``('severity', '=~', 'high|medium')``.

    Raises:
        ValueError: not ``label OP value``, an unknown label, or a bad regular expression.
    """
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(f"matcher {text!r} is not 'label=value' (=, !=, =~, !~)")
    label, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if label not in ROUTE_LABELS:
        raise ValueError(
            f"matcher {text!r}: unknown label {label!r} (known: {', '.join(ROUTE_LABELS)})"
        )
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"matcher {text!r}: bad regular expression: {exc}") from None
    return label, op, value


def _check_matchers(matchers: list[str]) -> list[str]:
    for text in matchers:
        parse_matcher(text)
    return matchers


def _check_labels(labels: list[str]) -> list[str]:
    for label in labels:
        if label != "..." and label not in ROUTE_LABELS:
            raise ValueError(f"unknown label {label!r} (known: {', '.join(ROUTE_LABELS)})")
    return labels


class BreakSpec(StrictModel):
    """A break inside a shift: not working time."""

    start: time = Field(description="HH:MM plant time; before the shift start = the next day.")
    minutes: float = Field(gt=0, le=24 * 60, description="How long it lasts.")


class ShiftSpec(StrictModel):
    """A shift in plant time; ``end`` before (or equal to) ``start`` ends the next day."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    start: time = Field(description="HH:MM plant time.")
    end: time = Field(description="HH:MM plant time; <= start: the next day.")
    breaks: list[BreakSpec] = Field(default_factory=list)


def _default_shifts() -> list[ShiftSpec]:
    return [
        ShiftSpec(name="first", start=time(6), end=time(14)),
        ShiftSpec(name="second", start=time(14), end=time(22)),
        ShiftSpec(name="third", start=time(22), end=time(6)),
    ]


def _monday_to_friday() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri"]


class CalendarConfig(StrictModel):
    """The plant's working time, in ``plant.timezone``: escalation ages count only this."""

    shifts: list[ShiftSpec] = Field(
        default_factory=_default_shifts,
        description="Shifts; one belongs to the plant date it starts on.",
    )
    workdays: list[Weekday] = Field(
        default_factory=_monday_to_friday,
        description="Weekdays whose shifts are worked.",
    )
    holidays: list[date] = Field(
        default_factory=list, description="Plant dates whose shifts are not worked."
    )

    @field_validator("shifts")
    @classmethod
    def _names_unique(cls, shifts: list[ShiftSpec]) -> list[ShiftSpec]:
        names = [s.name for s in shifts]
        if len(set(names)) != len(names):
            raise ValueError("shift names must be unique")
        return shifts

    def weekday_numbers(self) -> list[int]:
        """Workdays as ``date.weekday()`` numbers (0 = Monday)."""
        return [_WEEKDAYS.index(d) for d in self.workdays]


class LevelSpec(StrictModel):
    """One escalation level: reached when every age given is reached (working hours)."""

    after_filed_h: float = Field(gt=0, description="Working hours since the ticket was filed.")
    after_status_h: float | None = Field(
        default=None,
        gt=0,
        description="Working hours since Plex last changed its status (or since filing); "
        "empty: not required.",
    )


class EscalationPolicy(StrictModel):
    """Levels of the tickets whose category and severity match (empty = any)."""

    category: list[str] = Field(default_factory=list, description="Categories; empty = any.")
    severity: list[str] = Field(default_factory=list, description="Severities; empty = any.")
    levels: list[LevelSpec] = Field(min_length=1, description="Level 1, 2, ... in order.")
    working_time: bool = Field(
        default=True, description="Count ages in working time (false: wall-clock hours)."
    )

    @field_validator("levels")
    @classmethod
    def _ascending(cls, levels: list[LevelSpec]) -> list[LevelSpec]:
        hours = [lv.after_filed_h for lv in levels]
        if hours != sorted(hours):
            raise ValueError("after_filed_h must not decrease from one level to the next")
        return levels


def _default_policies() -> list[EscalationPolicy]:
    return [
        EscalationPolicy(
            levels=[
                LevelSpec(after_filed_h=4),
                LevelSpec(after_filed_h=16),
                LevelSpec(after_filed_h=48),
            ]
        )
    ]


class EscalationConfig(StrictModel):
    """How open tickets climb; the first policy that matches a ticket applies."""

    enabled: bool = Field(default=True, description="Run the escalation sweep in `notify`.")
    interval_s: float = Field(default=60.0, gt=0, description="Seconds between sweeps.")
    batch_size: int = Field(default=500, ge=1, description="Open tickets read per sweep.")
    policies: list[EscalationPolicy] = Field(default_factory=_default_policies)


class RouteConfig(StrictModel):
    """A node of the route tree (Alertmanager's ``route``).

    Unset timing, ``receiver`` and ``group_by`` are inherited from the parent. A child is
    tried in order; the first that matches takes the event unless it says ``continue``.
    """

    model_config = ConfigDict(**StrictModel.model_config, populate_by_name=True)

    receiver: str | None = Field(default=None, description="Receiver name; inherited if unset.")
    matchers: list[str] = Field(
        default_factory=list,
        description="'label=value', '!=', '=~regex', '!~regex'; all must hold.",
    )
    group_by: list[str] | None = Field(
        default=None, description="Labels that split groups; ['...'] = every label."
    )
    group_wait_s: float | None = Field(
        default=None, ge=0, description="Wait before a new group's first send."
    )
    group_interval_s: float | None = Field(
        default=None, gt=0, description="Wait before sending a group's new events."
    )
    repeat_interval_s: float | None = Field(
        default=None, gt=0, description="Resend a group with nothing new after this long."
    )
    continue_: bool = Field(default=False, alias="continue", description="Keep matching siblings.")
    routes: list[RouteConfig] = Field(default_factory=list)

    @field_validator("matchers")
    @classmethod
    def _matchers_valid(cls, matchers: list[str]) -> list[str]:
        return _check_matchers(matchers)

    @field_validator("group_by")
    @classmethod
    def _labels_known(cls, labels: list[str] | None) -> list[str] | None:
        return labels if labels is None else _check_labels(labels)

    def receivers_used(
        self, path: tuple[str | int, ...] = ("route",)
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """``(key path, receiver)`` of every node that names one."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        if self.receiver is not None:
            out.append(((*path, "receiver"), self.receiver))
        for i, child in enumerate(self.routes):
            out += child.receivers_used((*path, "routes", i))
        return out


class InhibitRule(StrictModel):
    """Mute target events while a source event's ticket is open (Alertmanager's)."""

    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list, description="Labels both must share.")

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _matchers_valid(cls, matchers: list[str]) -> list[str]:
        return _check_matchers(matchers)

    @field_validator("equal")
    @classmethod
    def _labels_known(cls, labels: list[str]) -> list[str]:
        return _check_labels(labels)


class EmailReceiver(StrictModel):
    """E-mail through ``notify.smtp``: HTML and plain text, evidence chart inline."""

    to: list[str] = Field(min_length=1, description="Recipients.")


class TeamsReceiver(StrictModel):
    """An Adaptive Card POSTed to a Teams workflow webhook."""

    webhook_url: OptionalSecret = Field(default=None, description="{env: NAME} or {file: PATH}.")
    url: str = Field(default="", description="A non-secret URL (local receivers in tests/demo).")

    @model_validator(mode="after")
    def _one_url(self) -> TeamsReceiver:
        if (self.webhook_url is None) == (not self.url):
            raise ValueError("give exactly one of webhook_url (a secret) and url")
        return self


class PlexReceiver(StrictModel):
    """Plex follow-up actions (``plex.actions.follow_up``) on the event's ticket."""

    note: bool = Field(default=True, description="Append a note to the Plex ticket.")
    raise_priority_at: int | None = Field(
        default=None, ge=1, description="Escalation level from which the priority is raised."
    )


class ReceiverConfig(StrictModel):
    """A named destination; one event reaches each integration it lists."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    email: EmailReceiver | None = None
    teams: TeamsReceiver | None = None
    plex: PlexReceiver | None = None

    def integrations(self) -> list[str]:
        """``email``, ``teams``, ``plex``: the ones configured."""
        return [k for k in ("email", "teams", "plex") if getattr(self, k) is not None]


class SmtpRelay(StrictModel):
    """The mail relay of notifications."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str = ""
    password: OptionalSecret = None
    sender: str = Field(default="repsys@localhost", min_length=3)
    timeout_s: float = Field(default=15.0, gt=0)


class OutboxConfig(StrictModel):
    """Delivery outbox: retries, dead letters, the age alarm."""

    max_attempts: int = Field(default=8, ge=1, description="Then dead-lettered (reason kept).")
    backoff_s: float = Field(default=5.0, gt=0, description="First retry delay; doubles each try.")
    backoff_max_s: float = Field(default=900.0, gt=0)
    claim_ttl_s: float = Field(default=60.0, gt=0, description="A claim older than this is free.")
    batch_size: int = Field(default=50, ge=1)
    max_age_s: float = Field(
        default=900.0, gt=0, description="A due delivery older than this raises an ops alert."
    )


def _default_route() -> RouteConfig:
    return RouteConfig(receiver="default")


def _default_receivers() -> list[ReceiverConfig]:
    return [ReceiverConfig(name="default")]


class RouteDefaults(StrictModel):
    """The root route's timing where it sets none (Alertmanager's defaults)."""

    group_by: list[str] = Field(default_factory=lambda: ["machine", "rule"])
    group_wait_s: float = Field(default=30.0, ge=0)
    group_interval_s: float = Field(default=300.0, gt=0)
    repeat_interval_s: float = Field(default=4 * 3600.0, gt=0)

    @field_validator("group_by")
    @classmethod
    def _labels_known(cls, labels: list[str]) -> list[str]:
        return _check_labels(labels)


class NotifyConfig(StrictModel):
    """Settings of escalation and deliveries (``notify/``)."""

    calendar: CalendarConfig = CalendarConfig()
    escalation: EscalationConfig = EscalationConfig()
    route: RouteConfig = Field(default_factory=_default_route)
    receivers: list[ReceiverConfig] = Field(default_factory=_default_receivers)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    admin_receiver: str | None = Field(
        default=None, description="Receiver of RepSys's own operations alerts."
    )
    smtp: SmtpRelay = SmtpRelay()
    outbox: OutboxConfig = OutboxConfig()
    defaults: RouteDefaults = RouteDefaults()

    @field_validator("receivers")
    @classmethod
    def _names_unique(cls, receivers: list[ReceiverConfig]) -> list[ReceiverConfig]:
        names = [r.name for r in receivers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"receiver {name!r} appears twice")
        return receivers

    @field_validator("route")
    @classmethod
    def _root_receiver(cls, route: RouteConfig) -> RouteConfig:
        if route.receiver is None:
            raise ValueError("the root route needs a receiver")
        if route.matchers:
            raise ValueError("the root route matches everything: no matchers")
        return route

    def reference_errors(self) -> list[tuple[tuple[str | int, ...], str]]:
        """``(key path, reason)`` of every receiver named but not defined."""
        names = {r.name for r in self.receivers}
        out = [
            (path, f"unknown receiver {name!r}")
            for path, name in self.route.receivers_used()
            if name not in names
        ]
        if self.admin_receiver is not None and self.admin_receiver not in names:
            out.append((("admin_receiver",), f"unknown receiver {self.admin_receiver!r}"))
        return out

    def receiver(self, name: str) -> ReceiverConfig | None:
        """The receiver of this name, or ``None``."""
        return next((r for r in self.receivers if r.name == name), None)
