"""Rule types: one module per type, registered here by the name used as ``type:``.

Adding a type: see "How to add a rule type" in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rules.derive import Facts
from rules.types.alarm_frequency import AlarmFrequency
from rules.types.base import Rule
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

#: ``type:`` → the class built with ``(spec, facts)``.
REGISTRY: dict[str, Callable[[Any, Facts], Rule]] = {
    "counter_jump": CounterJump,
    "counter_rollback": CounterRollback,
    "pallet_looped_out": PalletLoopedOut,
    "tool_life_short": ToolLifeShort,
    "tool_life_overrun": ToolLifeOverrun,
    "tool_change_forecast": ToolChangeForecast,
    "threshold": Threshold,
    "no_data": NoData,
    "downtime": Downtime,
    "micro_stop": MicroStop,
    "cycle_time": CycleTime,
    "spindle_load_drift": SpindleLoadDrift,
    "alarm_frequency": AlarmFrequency,
    "scrap_rate": ScrapRate,
}

__all__ = ["REGISTRY", "Rule"]
