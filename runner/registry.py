"""The registered Python steps, by the name pipelines use, and building pipelines.

An explicit dict (no registration by import side effect): adding a step is one line
here plus its name in a pipeline's ``steps`` (see runner/README.md).
"""

from __future__ import annotations

from collections.abc import Callable

from core.config.runner import RunnerConfig
from core.errors import ConfigError
from runner.escalation.steps import EscalationReport, ToolCheck
from runner.steps import CommandStep, Step
from runner.tb.extract import (
    Accounts,
    ClosedBalances,
    OpenActivity,
    PeriodRanges,
    Periods,
    StartPeriodUpdate,
    YearCategoryTypes,
)
from runner.tb.recreate import CheckBalanced, RecreateClosed, RecreateOpen
from runner.tb.report import Report

STEPS: dict[str, Callable[[], Step]] = {
    "year_category_types": YearCategoryTypes,
    "accounts": Accounts,
    "periods": Periods,
    "period_ranges": PeriodRanges,
    "start_period_update": StartPeriodUpdate,
    "closed_balances": ClosedBalances,
    "open_activity": OpenActivity,
    "recreate_closed": RecreateClosed,
    "recreate_open": RecreateOpen,
    "check_balanced": CheckBalanced,
    "report": Report,
    "escalation_report": EscalationReport,
    "tool_check": ToolCheck,
}


def build_pipeline(cfg: RunnerConfig, kind: str) -> list[Step]:
    """The steps of ``kind`` in order; an unknown name is a ConfigError with its path."""
    steps: list[Step] = []
    for index, name in enumerate(cfg.pipelines[kind].steps):
        path = f"runner.pipelines.{kind}.steps[{index}]"
        if name in cfg.commands and name in STEPS:
            raise ConfigError(f"command {name!r} has the name of a registered step", path=path)
        if name in cfg.commands:
            steps.append(CommandStep(name, cfg.commands[name]))
        elif name in STEPS:
            steps.append(STEPS[name]())
        else:
            known = ", ".join([*sorted(STEPS), *sorted(cfg.commands)])
            raise ConfigError(f"unknown step {name!r} (known: {known})", path=path)
    return steps


def build_pipelines(cfg: RunnerConfig) -> dict[str, list[Step]]:
    return {kind: build_pipeline(cfg, kind) for kind in cfg.pipelines}
