"""Configuration section ``rules:``, validated by the models below (owned by ``rules/``).

The section has four parts: how the worker consumes the signal streams (``worker``),
noise control shared by every rule (``group_wait_s``, ``shifts``), what the rules must
know about each machine's tools and cycles (``defaults`` and ``machines``), and the list
of rules (``rules``), each with a ``type`` naming its module in ``rules/types/``.

Durations are seconds (``*_s``). Every rule shares the Alertmanager-style keys of
:class:`RuleBase`; each type adds its parameters. ``rules/README.md`` documents each type
with a worked example; ``config/example.yaml`` shows every key.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import StrictModel
from core.model import Severity

#: Rule names appear in tickets, metric labels and silences: short and plain.
RULE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

RunRule = Literal[1, 2, 3, 4]
Chart = Literal["ewma", "cusum"]
CycleSource = Literal["part_count", "cycle_time", "cycle_edges", "run_state", "machining_event"]


class RulesWorkerConfig(StrictModel):
    """How a rules worker reads its partitions, leases them and checkpoints its state."""

    batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Entries read per partition per read."
    )
    block_ms: int = Field(
        default=500, ge=1, le=10_000, description="How long an idle worker waits for entries."
    )
    lease_ttl_s: float = Field(
        default=8.0, gt=0, description="A partition's lease expires this long after renewal."
    )
    renew_interval_s: float = Field(
        default=1.0, gt=0, description="Leases, heartbeat and rebalancing run this often."
    )
    worker_ttl_s: float = Field(
        default=8.0, gt=0, description="A worker without heartbeat this long counts as dead."
    )
    checkpoint_interval_s: float = Field(
        default=1.0, ge=0, description="Rule state is checkpointed (and entries acked) this often."
    )
    max_unacked: int = Field(
        default=50_000, ge=1, description="Checkpoint early when this many entries await it."
    )
    tick_interval_s: float = Field(
        default=1.0, gt=0, description="Timers (for, no data, group wait, repeats) run this often."
    )
    silence_refresh_s: float = Field(
        default=10.0, gt=0, description="Silences are re-read from the database this often."
    )
    db_retry_cap_s: float = Field(
        default=30.0, gt=0, description="Longest wait between retries of a failed database write."
    )

    @model_validator(mode="after")
    def _renew_well_before_expiry(self) -> RulesWorkerConfig:
        if self.renew_interval_s * 3 > self.lease_ttl_s:
            raise ValueError("renew_interval_s must be at most a third of lease_ttl_s")
        return self


class ToolRulesSpec(StrictModel):
    """What the plant's tool list says about one tool of one machine."""

    name: str = Field(default="", description="Display name in tickets; default 'Tool 1' for T1.")
    life: int | None = Field(
        default=None, gt=0, description="Standard tool life in parts; null: the controller's limit."
    )
    increment: int | None = Field(
        default=None, gt=0, description="Counts per machining event; null: from the signal, or 1."
    )
    pallets: int | None = Field(
        default=None, gt=0, description="Pallets running the tool; null: learned (most seen)."
    )


class MachineRulesSpec(StrictModel):
    """Per-machine facts the rules need: where cycles come from, its tools."""

    cycle_source: CycleSource = Field(
        default="part_count",
        description="Signal that delimits cycles: part_count (each increment ends one), "
        "cycle_time (reported), cycle_edges (cycle_start/cycle_end), run_state "
        "(executing spans), machining_event (tool-tracker start/end).",
    )
    fastest_cycle_time_s: float | None = Field(
        default=None, gt=0, description="Fixed fastest cycle time; null: learned per program."
    )
    tools: dict[str, ToolRulesSpec] = Field(
        default_factory=dict, description="Tool list by tool id as signalled (e.g. T1)."
    )
    load_by_tool: bool = Field(
        default=True,
        description="Spindle load without a subject belongs to the tool in the spindle "
        "(tool_number); false: to the spindle as a whole, its level restarting at any tool "
        "change (for controllers whose tool number does not mark the cutting tool).",
    )


# --- rule types -----------------------------------------------------------------------


class RuleBase(StrictModel):
    """Keys every rule has: scope, severity and Alertmanager-style noise control."""

    name: str = Field(
        pattern=RULE_NAME_PATTERN, description="Unique name; in tickets, metrics, silences."
    )
    machines: list[str] = Field(
        default_factory=list, description="Machine ids the rule watches; empty: every machine."
    )
    severity: Severity = Field(default=Severity.MEDIUM, description="low, medium or high.")
    for_s: float = Field(
        default=0.0, ge=0, description="The condition must hold this long before it fires."
    )
    keep_firing_for_s: float = Field(
        default=3600.0,
        ge=0,
        description="An episode stays open this long after its condition cleared; a "
        "recurrence within it is the same episode (a repeat).",
    )
    repeat_interval_s: float | None = Field(
        default=14_400.0,
        gt=0,
        description="While an episode keeps recurring, escalate its ticket this often; "
        "null: never.",
    )
    inhibit_in_modes: list[str] = Field(
        default_factory=lambda: ["setup", "maintenance"],
        description="Operation modes in which the rule opens no episode.",
    )
    category: str = Field(
        default="", max_length=32, description="Ticket category; empty: the type's default."
    )


class CounterJumpRule(RuleBase):
    """The plants' counter jump ("network error", shift tool change avoidance)."""

    type: Literal["counter_jump"]
    factor: float = Field(default=5.0, gt=0, description="Slack factor of the formula (5).")


class CounterRollbackRule(RuleBase):
    """The plants' counter roll-back: no jump, but not the other pallet's last + increment."""

    type: Literal["counter_rollback"]
    jump_factor: float = Field(
        default=5.0, gt=0, description="Factor of the jump test that excludes jumps (5)."
    )
    loop_out_events: int = Field(
        default=5,
        ge=2,
        le=50,
        description="A run of this many events on one pallet is a loop-out, not roll-backs "
        "(pallet_looped_out's events).",
    )


class PalletLoopedOutRule(RuleBase):
    """A shared tool whose last machining events do not cover all its pallets."""

    type: Literal["pallet_looped_out"]
    keep_firing_for_s: float = Field(default=600.0, ge=0, description="See RuleBase.")
    events: int = Field(
        default=5, ge=2, le=50, description="Machining events since shift start examined."
    )


class ToolLifeShortRule(RuleBase):
    """A tool changed before reaching its standard tool life."""

    type: Literal["tool_life_short"]
    min_fraction: float = Field(
        default=1.0, gt=0, le=1, description="Flag changes below life x min_fraction."
    )


class ToolLifeOverrunRule(RuleBase):
    """A tool used past its life without a change."""

    type: Literal["tool_life_overrun"]
    keep_firing_for_s: float = Field(default=0.0, ge=0, description="See RuleBase.")
    margin: int = Field(default=0, ge=0, description="Parts past the life tolerated.")


class ToolChangeForecastRule(RuleBase):
    """The upcoming tool change list for the boards (no ticket)."""

    type: Literal["tool_change_forecast"]
    horizon_min: float = Field(
        default=480.0, gt=0, description="List tools due within this many minutes."
    )


class ThresholdRule(RuleBase):
    """A numeric signal above (or below) a limit, with hysteresis."""

    type: Literal["threshold"]
    keep_firing_for_s: float = Field(default=300.0, ge=0, description="See RuleBase.")
    signal: str = Field(min_length=1, description="Signal name, e.g. spindle_load.")
    subject: str | None = Field(default=None, description="Only this subject; null: any.")
    above: float | None = Field(default=None, description="Fire when the value exceeds this.")
    below: float | None = Field(default=None, description="Fire when the value drops below.")
    clear_at: float | None = Field(
        default=None, description="Hysteresis: clear only past this value; null: the limit."
    )

    @model_validator(mode="after")
    def _one_limit(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' and 'below'")
        if self.clear_at is not None:
            if self.above is not None and self.clear_at > self.above:
                raise ValueError("clear_at must not be above 'above'")
            if self.below is not None and self.clear_at < self.below:
                raise ValueError("clear_at must not be below 'below'")
        return self


class NoDataRule(RuleBase):
    """A source that stopped sending (not a machine that stopped)."""

    type: Literal["no_data"]
    keep_firing_for_s: float = Field(default=0.0, ge=0, description="See RuleBase.")
    inhibit_in_modes: list[str] = Field(default_factory=list, description="See RuleBase.")
    timeout_s: float = Field(default=120.0, gt=0, description="Silence longer than this.")
    signals: list[str] = Field(
        default_factory=list, description="Signals that count as data; empty: any signal."
    )
    inhibits: list[str] | None = Field(
        default=None, description="Rules muted while this fires; null: every other rule."
    )


class DowntimeRule(RuleBase):
    """Not executing while in processing mode for longer than ``for_s``."""

    type: Literal["downtime"]
    for_s: float = Field(default=300.0, ge=0, description="Downtime shorter than this is ignored.")
    keep_firing_for_s: float = Field(default=0.0, ge=0, description="See RuleBase.")
    running_states: list[str] = Field(
        default_factory=lambda: ["executing"], description="run_state values that mean running."
    )


class MicroStopRule(RuleBase):
    """Too many short stops in processing mode within a window."""

    type: Literal["micro_stop"]
    min_s: float = Field(default=5.0, ge=0, description="Stops shorter than this are ignored.")
    max_s: float = Field(default=300.0, gt=0, description="Longer stops are downtime instead.")
    count: int = Field(default=10, ge=1, description="Micro-stops within window_s that fire.")
    window_s: float = Field(default=3600.0, gt=0, description="Sliding window.")
    running_states: list[str] = Field(
        default_factory=lambda: ["executing"], description="run_state values that mean running."
    )


class CycleTimeRule(RuleBase):
    """Cycle time against a standard and against a learned baseline (EWMA, CUSUM, WE)."""

    type: Literal["cycle_time"]
    keep_firing_for_s: float = Field(default=900.0, ge=0, description="See RuleBase.")
    standard_s: dict[str, float] = Field(
        default_factory=dict, description="Standard cycle time by program; '*': any program."
    )
    max_ratio: float = Field(default=1.2, gt=1, description="Slower than standard x this fires.")
    learned: bool = Field(default=True, description="Also watch a baseline learned per program.")
    warmup_cycles: int = Field(
        default=200, ge=5, description="Accepted cycles of a phase I stretch (baseline)."
    )
    charts: list[Chart] = Field(
        default_factory=lambda: list[Chart](["cusum"]),
        description="Charts on the learned baseline; the default design is the CUSUM alone.",
    )
    ewma_lambda: float = Field(default=0.1, gt=0, le=1, description="EWMA weight of a cycle.")
    ewma_limit: float = Field(
        default=4.7, gt=0, description="EWMA limit L (sigmas of z): ARL0 5.6e5 at lambda 0.1."
    )
    cusum_k: float = Field(default=0.5, ge=0, description="CUSUM allowance k (sigma).")
    cusum_h: float = Field(
        default=12.0, gt=0, description="CUSUM decision interval h (sigma): ARL0 5.2e5 at k 0.5."
    )
    z_clip: float = Field(
        default=4.0, gt=0, description="z is clipped to +-this before the charts (spikes)."
    )
    clear_cycles: int = Field(
        default=30, ge=1, description="Cycles without a new chart signal that clear it."
    )
    run_rules: list[RunRule] = Field(
        default_factory=list,
        description="Western Electric rules applied (1-4); off by default: noisy per cycle.",
    )
    min_cycles: int = Field(
        default=5,
        ge=1,
        description="Consecutive cycles out of standard or of a run rule before it is raised.",
    )
    normalize_feed_override: bool = Field(
        default=True, description="Scale cycle times by feed override / 100."
    )
    min_sigma_fraction: float = Field(
        default=0.001, gt=0, description="Sigma floor as a fraction of the mean."
    )
    sigma_confidence: float | None = Field(
        default=0.975,
        ge=0.5,
        lt=1.0,
        description="The learned sigma is raised to this upper confidence bound of its "
        "estimate (x 1.11 from 200 cycles): an underestimated sigma makes false tickets. "
        "null: sigma as estimated.",
    )
    relearn_on_program_change: bool = Field(
        default=True, description="A program started again learns its baseline again."
    )
    running_states: list[str] = Field(
        default_factory=lambda: ["executing", "active"],
        description="Run states (any case) in which the machine runs; others are a pause.",
    )
    stop_min_s: float = Field(
        default=60.0,
        ge=0,
        description="A pause this long within a cycle is a stop: the cycle is left out.",
    )


class SpindleLoadDriftRule(RuleBase):
    """Spindle load of a tool drifting above its level right after its last change."""

    type: Literal["spindle_load_drift"]
    for_s: float = Field(default=60.0, ge=0, description="See RuleBase.")
    # A worn tool's smoothed load dips under the clear level now and then (noise, a light
    # cut): without keep-firing each dip resolved the episode and the next rise filed a
    # second ticket (the demo's cnc120: two tickets 15-28 s apart).
    keep_firing_for_s: float = Field(default=900.0, ge=0, description="See RuleBase.")
    threshold: float = Field(default=30.0, gt=0, description="Drift in load percent points.")
    baseline_samples: int = Field(default=30, ge=1, description="Samples after a change: level.")
    smoothing_samples: int = Field(default=30, ge=1, description="EWMA span of the current load.")
    min_load: float = Field(default=5.0, ge=0, description="Samples below this are not cutting.")
    sample_clip: float = Field(
        default=2.0,
        gt=1,
        description="A sample counts at most this x threshold above the level (spikes).",
    )


class AlarmFrequencyRule(RuleBase):
    """The same alarm code N times within a window."""

    type: Literal["alarm_frequency"]
    count: int = Field(default=3, ge=2, description="Occurrences that fire.")
    window_s: float = Field(default=600.0, gt=0, description="Sliding window.")
    codes: list[str] = Field(default_factory=list, description="Only these codes; empty: all.")


class ScrapRateRule(RuleBase):
    """Bad parts over a window above a rate."""

    type: Literal["scrap_rate"]
    keep_firing_for_s: float = Field(default=0.0, ge=0, description="See RuleBase.")
    max_rate: float = Field(default=0.05, gt=0, lt=1, description="Bad / all parts that fires.")
    window_s: float = Field(default=3600.0, gt=0, description="Sliding window.")
    min_parts: int = Field(default=20, ge=1, description="Parts in the window before judging.")


RuleSpec = Annotated[
    CounterJumpRule
    | CounterRollbackRule
    | PalletLoopedOutRule
    | ToolLifeShortRule
    | ToolLifeOverrunRule
    | ToolChangeForecastRule
    | ThresholdRule
    | NoDataRule
    | DowntimeRule
    | MicroStopRule
    | CycleTimeRule
    | SpindleLoadDriftRule
    | AlarmFrequencyRule
    | ScrapRateRule,
    Field(discriminator="type"),
]

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class RulesConfig(StrictModel):
    """Settings of the ``rules`` package. Every key has a default and a description."""

    worker: RulesWorkerConfig = Field(
        default_factory=RulesWorkerConfig, description="Consumption, leases, checkpoints."
    )
    group_wait_s: float = Field(
        default=30.0,
        ge=0,
        description="Episodes of one machine firing within this long share one ticket.",
    )
    shifts: list[str] = Field(
        default_factory=lambda: ["06:00", "14:00", "22:00"],
        description="Shift start times (HH:MM, plant time zone).",
    )
    min_cycle_time_s: float = Field(
        default=1.0, ge=0, description="Shorter cycles are glitches: not cycles, not learned."
    )
    ticket_kind: str = Field(
        default="maintenance_work_request", min_length=1, description="Plex action of tickets."
    )
    defaults: MachineRulesSpec = Field(
        default_factory=MachineRulesSpec, description="Machine settings unless overridden."
    )
    machines: dict[str, MachineRulesSpec] = Field(
        default_factory=dict, description="Per-machine settings by machine id."
    )
    rules: list[RuleSpec] = Field(default_factory=list, description="The rules, each by type.")

    @field_validator("shifts")
    @classmethod
    def _shifts_are_times(cls, shifts: list[str]) -> list[str]:
        if not shifts:
            raise ValueError("give at least one shift start")
        for item in shifts:
            if not _HHMM.match(item):
                raise ValueError(f"shift start {item!r} is not HH:MM")
        return shifts

    @field_validator("rules")
    @classmethod
    def _names_unique(cls, rules: list[RuleSpec]) -> list[RuleSpec]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} appears twice")
            seen.add(rule.name)
        return rules

    def machine_spec(self, machine_id: str) -> MachineRulesSpec:
        """The machine's settings: the keys it sets, over ``defaults`` (tools merged by id)."""
        own = self.machines.get(machine_id)
        if own is None:
            return self.defaults
        merged = {**self.defaults.model_dump(), **own.model_dump(exclude_unset=True)}
        merged["tools"] = {**self.defaults.tools, **own.tools}
        return MachineRulesSpec.model_validate(merged)
