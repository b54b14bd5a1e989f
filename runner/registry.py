"""The registered Python steps, by the name pipelines use, and building pipelines.

An explicit tuple of classes (no registration by import side effect), each declaring its
``name`` once: adding a step is its class in :data:`STEP_CLASSES` plus its name in a
pipeline's ``steps`` (see runner/README.md).
"""

from __future__ import annotations

from collections.abc import Callable

from core.config.runner import RunnerConfig
from core.errors import ConfigError
from runner.escalation.steps import EscalationReport, ToolCheck
from runner.steps import CommandStep, Step
from runner.tb.common import SourcedStep
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
from runner.tb.source import TbSources

#: Every registered Python step class, once; each declares its ``name`` on the class.
STEP_CLASSES: tuple[type[Step], ...] = (
    YearCategoryTypes,
    Accounts,
    Periods,
    PeriodRanges,
    StartPeriodUpdate,
    ClosedBalances,
    OpenActivity,
    RecreateClosed,
    RecreateOpen,
    CheckBalanced,
    Report,
    EscalationReport,
    ToolCheck,
)


#: Builds a step with the sources it may need (only a ``SourcedStep`` takes them).
StepFactory = Callable[[TbSources], Step]


def _factory(cls: type[Step]) -> StepFactory:
    if issubclass(cls, SourcedStep):
        return cls
    return lambda _sources: cls()


def _registry(classes: tuple[type[Step], ...]) -> dict[str, StepFactory]:
    """Name -> step factory, from each class's ``name``.

    Raises:
        TypeError: a name registered twice.
    """
    steps: dict[str, StepFactory] = {}
    for cls in classes:
        if cls.name in steps:
            raise TypeError(f"step {cls.name!r} registered twice")
        steps[cls.name] = _factory(cls)
    return steps


#: Steps by the name pipelines use.
STEPS: dict[str, StepFactory] = _registry(STEP_CLASSES)


def build_pipeline(cfg: RunnerConfig, kind: str, sources: TbSources | None = None) -> list[Step]:
    """The steps of ``kind`` in order; an unknown name is a ConfigError with its path.

    ``sources`` are given to the steps that read Plex (none configured when ``None``).
    """
    sources = sources if sources is not None else TbSources()
    steps: list[Step] = []
    for index, name in enumerate(cfg.pipelines[kind].steps):
        path = f"runner.pipelines.{kind}.steps[{index}]"
        if name in cfg.commands and name in STEPS:
            raise ConfigError(f"command {name!r} has the name of a registered step", path=path)
        if name in cfg.commands:
            steps.append(CommandStep(name, cfg.commands[name]))
        elif name in STEPS:
            steps.append(STEPS[name](sources))
        else:
            known = ", ".join([*sorted(STEPS), *sorted(cfg.commands)])
            raise ConfigError(f"unknown step {name!r} (known: {known})", path=path)
    return steps


def build_pipelines(cfg: RunnerConfig, sources: TbSources | None = None) -> dict[str, list[Step]]:
    return {kind: build_pipeline(cfg, kind, sources) for kind in cfg.pipelines}
