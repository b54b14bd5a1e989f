"""Rule types: one module per type, registered here by the name used as ``type:``.

Adding a type: see "A rule type" under Checklists in docs/ARCHITECTURE.md. The class declares
its name (through its ``spec_model``) and its ticket category; this module only lists it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast, get_args

from core.config.base import type_tag
from core.config.rules import RuleSpec
from rules.derive import Facts
from rules.types.alarm_frequency import AlarmFrequency
from rules.types.base import BaseRule, Rule
from rules.types.counter_jump import CounterJump
from rules.types.counter_rollback import CounterRollback
from rules.types.cycle_time import CycleTime
from rules.types.downtime import Downtime
from rules.types.micro_stop import MicroStop
from rules.types.no_data import NoData
from rules.types.pallet_looped_out import PalletLoopedOut
from rules.types.scrap_rate import ScrapRate
from rules.types.spindle_load_drift import SpindleLoadDrift
from rules.types.threshold import Threshold
from rules.types.tool_change_forecast import ToolChangeForecast
from rules.types.tool_life_overrun import ToolLifeOverrun
from rules.types.tool_life_short import ToolLifeShort

#: Every rule type, once. The registry, the default ticket categories and the check
#: against the config's ``RuleSpec`` union are built from this tuple.
TYPES: tuple[type[BaseRule], ...] = (
    CounterJump,
    CounterRollback,
    PalletLoopedOut,
    ToolLifeShort,
    ToolLifeOverrun,
    ToolChangeForecast,
    Threshold,
    NoData,
    Downtime,
    MicroStop,
    CycleTime,
    SpindleLoadDrift,
    AlarmFrequency,
    ScrapRate,
)


#: How the engine builds a rule: ``cls(spec, facts)``.
Builder = Callable[[Any, Facts], Rule]


def _registry(types: tuple[type[BaseRule], ...]) -> dict[str, type[BaseRule]]:
    """``type:`` -> class, from each class's ``spec_model``; refuses what would fail later.

    Raises:
        TypeError: a type without ``spec_model`` or ``category``, a name twice, or a
            ``RuleSpec`` member (a configurable type) without a class.
    """
    registry: dict[str, type[BaseRule]] = {}
    for cls in types:
        spec = cls.__dict__.get("spec_model")
        category = cls.__dict__.get("category")
        if spec is None or not (isinstance(category, str) and category):
            raise TypeError(f"rule type {cls.__name__} must declare spec_model and category")
        name = type_tag(spec)
        if name in registry:
            raise TypeError(f"rule type {name!r} registered twice")
        registry[name] = cls
    configurable = {type_tag(m) for m in get_args(get_args(RuleSpec)[0])}
    if missing := configurable - set(registry):
        raise TypeError(f"rule types without a class: {sorted(missing)}")
    return registry


_CLASSES = _registry(TYPES)
#: ``type:`` → the class built with ``(spec, facts)`` (each type's ``__init__`` takes its
#: own spec model, which ``BaseRule``'s signature cannot say: hence the cast).
REGISTRY: dict[str, Builder] = {name: cast("Builder", cls) for name, cls in _CLASSES.items()}
#: Ticket category per rule type when the rule does not name one.
DEFAULT_CATEGORY: dict[str, str] = {name: cls.category for name, cls in _CLASSES.items()}
#: Ticket title per rule type where the category's title would mislabel the ticket.
TYPE_TITLES: dict[str, str] = {name: cls.title for name, cls in _CLASSES.items() if cls.title}

__all__ = ["DEFAULT_CATEGORY", "REGISTRY", "TYPES", "TYPE_TITLES", "Builder", "Rule"]
