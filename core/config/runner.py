"""Configuration section ``runner:`` (owned by ``runner/``): queue, mutex, pipelines, reports.

The runner is configured by report *kind*: each kind (``tb``, ``escalation``,
``tool_check``) has a pipeline, an ordered list of step names, and a number of mutex
permits (the trial balance allows one run at a time). A step name is either a Python step
registered in ``runner/`` or a key of ``commands`` (an external program: the design's "ETL
scripts"). Step names are checked against the registry when a runner starts, so an unknown
name stops the process with its key path before it takes any request.

Secrets (SMTP password, Teams webhook URL, ODBC password) are references, never text.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Any, Literal

from pydantic import Field, PositiveFloat, field_validator, model_validator

from core.config.base import OptionalSecret, StrictModel, odbc_without_password

#: Kind names appear in Redis keys (hash tags), metric labels and file names.
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
#: Step and command names appear in the step history and in metric labels.
STEP_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

Channel = Literal["email", "teams"]
SeverityName = Literal["low", "medium", "high"]


def _email_only() -> list[Channel]:
    return ["email"]


def _default_sla() -> dict[SeverityName, float]:
    return {"low": 72.0, "medium": 24.0, "high": 4.0}


#: The ten steps of the trial balance as it ran in production (DOMAIN.md section 5),
#: with the debits-equal-credits check before the report.
TB_STEPS = [
    "year_category_types",
    "accounts",
    "periods",
    "period_ranges",
    "start_period_update",
    "closed_balances",
    "open_activity",
    "recreate_closed",
    "recreate_open",
    "check_balanced",
    "report",
]


class PipelineConfig(StrictModel):
    """One report kind's pipeline: steps run in order, stopping at the first failure."""

    steps: list[str] = Field(min_length=1, description="Step names, in order.")
    permits: int = Field(
        default=1, ge=1, le=64, description="Runs of this kind allowed at once (TB: 1)."
    )
    notify: list[Channel] = Field(
        default_factory=_email_only,
        description="Where the one success/failure message of each run goes.",
    )

    @field_validator("steps")
    @classmethod
    def _step_names(cls, steps: list[str]) -> list[str]:
        for name in steps:
            if not re.match(STEP_PATTERN, name):
                raise ValueError(f"step name {name!r} must match {STEP_PATTERN}")
        if len(set(steps)) != len(steps):
            raise ValueError("a step appears twice in the pipeline")
        return steps


#: What a command step gets from the runner's environment by default: enough to find and
#: run programs, nothing that holds a credential.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")


class CommandConfig(StrictModel):
    """An external step: a program run with the request's parameters in its environment.

    The environment gets ``REPSYS_REQUEST_ID``, ``REPSYS_KIND``, ``REPSYS_FENCE`` (the
    fencing number every load must check), ``REPSYS_PARAMS`` (JSON) and one
    ``REPSYS_PARAM_<NAME>`` per parameter. Exit status 0 is success; stdout and stderr are
    captured into the step history (their tail).
    """

    argv: list[str] = Field(min_length=1, description="Program and arguments (no shell).")
    timeout_s: float = Field(default=600.0, gt=0, description="Killed after this long.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment.")
    inherit_env: list[str] = Field(
        default_factory=lambda: list(INHERITED_ENV),
        description="Names of the runner's environment variables the command gets; the "
        "runner's secrets (Plex, database, ODBC passwords) are not passed unless named.",
    )
    cwd: str | None = Field(default=None, description="Working directory (default: the runner's).")


class OdbcConfig(StrictModel):
    """Plex's ODBC data source (production: Progress DataDirect OpenAccess).

    Production looks like ``Driver=/opt/Progress/DataDirect/.../ivoa27.so;
    HostName=odbc.plex.com;PortNumber=19995;ServerDataSource=ReportDataSource;
    CustomProperties=...;User=...``; the password is appended from ``password``. The
    demo and the tests point at the simulated accounting database through the SQLite
    ODBC driver (``repsys sim accounting build``).
    """

    connection_string: str = Field(
        default="", description="pyodbc connection string without the password."
    )

    @field_validator("connection_string")
    @classmethod
    def _no_password_in_string(cls, text: str) -> str:
        return odbc_without_password(text)

    password: OptionalSecret = Field(default=None, description="Appended as PWD=...")
    timeout_s: int = Field(default=600, ge=0, description="Query timeout; 0 = none.")


class TBConfig(StrictModel):
    """The trial balance (DOMAIN.md section 5)."""

    pcns: list[int] = Field(
        default_factory=list,
        description="PCNs a TB may name; empty = the PCNs of the configured machines.",
    )
    odbc: OdbcConfig = OdbcConfig()
    data_source_key: int = Field(
        default=4814, gt=0, description="Account_Activity_Summary_xPCN_Get (open periods)."
    )
    closed_window: int = Field(
        default=13, ge=1, le=240, description="Closed periods in a TB without start/end."
    )
    file_suffix: str = Field(
        default="DM",
        pattern=r"^[A-Za-z0-9_-]{0,16}$",
        description="Last part of the file name: TB-202306_to_202406_on_07-07_DM.",
    )
    report_to: list[str] = Field(
        default_factory=list, description="Recipients of 'Trial Balance Report - <date>'."
    )
    report_subject: str = Field(
        default="Trial Balance Report - {date}", description="Subject; {date} is MM-DD-YYYY."
    )
    check_ytd: bool = Field(
        default=True,
        description="Also require YTD debits = YTD credits (needs year-end closing entries).",
    )


class EscalationLevel(StrictModel):
    """Who hears about a ticket open longer than ``after_hours``."""

    name: str = Field(min_length=1, description="e.g. supervisor, manager.")
    after_hours: float = Field(gt=0, description="Ticket age from which this level applies.")
    to: list[str] = Field(default_factory=list, description="E-mail recipients of this level.")


class BreakConfig(StrictModel):
    """A planned stop inside a shift (meal, break, meeting): not planned production time."""

    start: time = Field(description="HH:MM plant time; before the shift start = the next day.")
    minutes: float = Field(gt=0, le=24 * 60, description="How long the break lasts.")


class ShiftConfig(StrictModel):
    """A shift of the plant, in the plant's time zone. It may cross midnight.

    Its length is the real elapsed time between start and end: a night across the
    autumn DST change lasts an hour longer, across the spring change an hour shorter.
    """

    name: str = Field(min_length=1)
    start: time = Field(description="HH:MM local time.")
    end: time = Field(description="HH:MM local time; before start = ends the next day.")
    breaks: list[BreakConfig] = Field(
        default_factory=list, description="Breaks and planned stops, excluded from planned time."
    )


def _default_levels() -> list[EscalationLevel]:
    return [
        EscalationLevel(name="supervisor", after_hours=4),
        EscalationLevel(name="manager", after_hours=24),
    ]


def _default_shifts() -> list[ShiftConfig]:
    return [
        ShiftConfig(name="first", start=time(6), end=time(14)),
        ShiftConfig(name="second", start=time(14), end=time(22)),
        ShiftConfig(name="third", start=time(22), end=time(6)),
    ]


class EscalationConfig(StrictModel):
    """The escalation report: open tickets against SLAs, recurring episodes, tools, OEE."""

    sla_hours: dict[SeverityName, float] = Field(
        default_factory=_default_sla,
        description="Hours a ticket of each severity may stay open.",
    )
    levels: list[EscalationLevel] = Field(
        default_factory=_default_levels, description="Escalation levels by ticket age."
    )
    recurring_min: int = Field(
        default=3, ge=2, description="Episodes of one fingerprint that make it recurring."
    )
    recurring_days: int = Field(default=7, ge=1, description="Look-back for recurring episodes.")
    tool_life_rule_types: list[str] = Field(
        default_factory=lambda: ["tool_life_short"],
        description="Rule types whose episodes count as tools not reaching tool life.",
    )
    downtime_rule_types: list[str] = Field(
        default_factory=lambda: ["downtime"],
        description="Rule types whose episodes are downtime (OEE availability).",
    )
    shifts: list[ShiftConfig] = Field(default_factory=_default_shifts)
    standard_cycle_s: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="Ideal cycle time in seconds per part, by 'machine/program' or 'machine'; "
        "else the rules' fastest_cycle_time_s, else the fastest cycle seen in the shift.",
    )
    setup_modes: list[str] = Field(
        default_factory=lambda: ["setup"],
        description="Operation modes whose time is an availability loss (setup, changeover).",
    )
    to: list[str] = Field(default_factory=list, description="E-mail recipients of the report.")
    teams: bool = Field(default=False, description="Also post the report to Teams.")


class SmtpConfig(StrictModel):
    """The mail relay used for reports and run notices."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = Field(
        default="none", description="starttls on 587, ssl on 465 in most relays."
    )
    username: str = Field(default="", description="Empty: no login.")
    password: OptionalSecret = None
    sender: str = Field(default="repsys@localhost", min_length=3)
    timeout_s: float = Field(default=30.0, gt=0)


class TeamsConfig(StrictModel):
    """A Microsoft Teams incoming webhook (or a Workflows webhook taking the same card)."""

    webhook_url: OptionalSecret = Field(
        default=None, description="The webhook URL is a secret: {env: NAME} or {file: PATH}."
    )
    timeout_s: float = Field(default=15.0, gt=0)


class ScheduleConfig(StrictModel):
    """One schedule: a cron expression that enqueues a request of ``kind``."""

    name: str = Field(pattern=STEP_PATTERN, description="Names the schedule in logs and ids.")
    kind: str = Field(pattern=KIND_PATTERN)
    cron: str = Field(description="Five fields: minute hour day month day-of-week.")
    params: dict[str, Any] = Field(default_factory=dict)
    misfire_grace_s: int = Field(
        default=300, ge=1, description="A run late by more than this is skipped and logged."
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        fields = cron.split()
        if len(fields) != 5:
            raise ValueError(f"cron {cron!r} must have five fields")
        from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415 - validation only

        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise ValueError(f"cron {cron!r}: {exc}") from None
        return cron


def _default_schedules() -> list[ScheduleConfig]:
    return [
        ScheduleConfig(name="tb_monthly", kind="tb", cron="0 5 2 * *"),
        ScheduleConfig(name="escalation_first", kind="escalation", cron="0 14 * * *"),
        ScheduleConfig(name="escalation_second", kind="escalation", cron="0 22 * * *"),
        ScheduleConfig(name="escalation_third", kind="escalation", cron="0 6 * * *"),
        ScheduleConfig(name="tool_check", kind="tool_check", cron="*/15 * * * *"),
    ]


class SchedulerConfig(StrictModel):
    """``repsys scheduler``: one active instance (a lease), the others stand by."""

    schedules: list[ScheduleConfig] = Field(default_factory=_default_schedules)
    lease_ttl_s: float = Field(default=30.0, gt=1, description="Leader lease TTL.")
    requester: str = Field(default="scheduler", description="Requester of scheduled requests.")

    @field_validator("schedules")
    @classmethod
    def _unique(cls, schedules: list[ScheduleConfig]) -> list[ScheduleConfig]:
        names = [s.name for s in schedules]
        if len(set(names)) != len(names):
            raise ValueError("schedule names must be unique")
        return schedules


def _default_pipelines() -> dict[str, PipelineConfig]:
    return {
        "tb": PipelineConfig(steps=list(TB_STEPS), permits=1),
        "escalation": PipelineConfig(steps=["escalation_report"], permits=1),
        "tool_check": PipelineConfig(steps=["tool_check"], permits=1, notify=[]),
    }


class RunnerConfig(StrictModel):
    """Settings of the ``runner`` package. Every key has a default and a description."""

    output_dir: str = Field(
        default="var/reports", description="Report files, one folder per request."
    )
    pipelines: dict[str, PipelineConfig] = Field(
        default_factory=_default_pipelines, description="Report kind -> its pipeline."
    )
    commands: dict[str, CommandConfig] = Field(
        default_factory=dict, description="External steps by name (usable in pipelines)."
    )
    lease_ttl_s: float = Field(default=30.0, gt=0.2, description="Mutex lease TTL.")
    renew_every_s: float = Field(
        default=0.0, ge=0, description="Lease renewal period; 0 = a third of the TTL."
    )
    claim_idle_s: float = Field(
        default=60.0, gt=0, description="A request idle this long in a dead runner is reclaimed."
    )
    block_s: float = Field(default=5.0, gt=0, description="Wait for a new request this long.")
    max_attempts: int = Field(
        default=3, ge=1, description="Runs of one request before it is failed as a poison pill."
    )
    keep_runs_days: int = Field(default=90, ge=1, description="Step history kept this long.")
    notify_to: list[str] = Field(
        default_factory=list, description="Recipients of every run's success/failure mail."
    )
    smtp: SmtpConfig | None = Field(default=None, description="No mail is sent without it.")
    teams: TeamsConfig | None = Field(default=None, description="No Teams post without it.")
    tb: TBConfig = TBConfig()
    escalation: EscalationConfig = EscalationConfig()
    scheduler: SchedulerConfig = SchedulerConfig()

    @field_validator("pipelines")
    @classmethod
    def _kinds(cls, pipelines: dict[str, PipelineConfig]) -> dict[str, PipelineConfig]:
        for kind in pipelines:
            if not re.match(KIND_PATTERN, kind):
                raise ValueError(f"report kind {kind!r} must match {KIND_PATTERN}")
        return pipelines

    @field_validator("commands")
    @classmethod
    def _commands(cls, commands: dict[str, CommandConfig]) -> dict[str, CommandConfig]:
        for name in commands:
            if not re.match(STEP_PATTERN, name):
                raise ValueError(f"command name {name!r} must match {STEP_PATTERN}")
        return commands

    @model_validator(mode="after")
    def _consistent(self) -> RunnerConfig:
        if self.renew_every_s and self.renew_every_s >= self.lease_ttl_s:
            raise ValueError("renew_every_s must be shorter than lease_ttl_s")
        for schedule in self.scheduler.schedules:
            if schedule.kind not in self.pipelines:
                raise ValueError(
                    f"schedule {schedule.name!r} names kind {schedule.kind!r}, "
                    "which has no pipeline"
                )
        return self

    @property
    def renew_period_s(self) -> float:
        """How often a mutex holder renews its lease."""
        return self.renew_every_s or self.lease_ttl_s / 3
