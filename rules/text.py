"""Ticket text a maintenance technician can act on without opening RepSys.

Each rule says what it saw in one headline ("Tool 1 on CNC 120 is not reaching tool life")
and one detail sentence ("changed at 212 of 348 parts"); this module adds the machine,
its Plex workcenter, the time window in plant time, the triggering values, the machine's
state and the rule's parameters, so the ticket explains itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.config.machines import Machine

_TITLES = {
    "tooling": "Tooling Issue",
    "pallet": "Pallet Issue",
    "machine": "Machine Issue",
    "data": "Data Issue",
    "downtime": "Downtime",
    "process": "Process Issue",
    "alarm": "Alarm Issue",
    "quality": "Quality Issue",
}

_SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2}


def category_title(category: str) -> str:
    return _TITLES.get(category) or f"{category.replace('_', ' ').title()} Issue"


@dataclass(frozen=True, slots=True)
class RuleText:
    """A configured rule's ticket category and the title's prefix."""

    category: str
    title: str


def rule_text(category: str, type_category: str, type_title: str = "") -> RuleText:
    """The rule's own ``category`` if it set one, else its type's (and the type's title).

    Args:
        category: the rule's configured ``category`` ("" when not set).
        type_category: its type's category (``rules.types.DEFAULT_CATEGORY``).
        type_title: its type's own title, where the category's would mislabel it.
    """
    if category:
        return RuleText(category, category_title(category))
    return RuleText(type_category, type_title or category_title(type_category))


def worst(severities: list[str]) -> str:
    return max(severities, key=lambda s: _SEVERITY_ORDER.get(s, 1))


def local_time(ts: float, zone: ZoneInfo) -> str:
    """``2023-11-14 16:13:20 CST``: the plant's clock, as its people read it."""
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _pairs(data: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_value(v)}" for k, v in data.items() if v is not None)


def describe(
    *,
    headline: str,
    detail: str,
    machine: Machine | None,
    machine_id: str,
    evidence: dict[str, Any],
    zone: ZoneInfo,
) -> str:
    """One episode's paragraph of a ticket description."""
    lines = [f"{headline}: {detail}." if detail else f"{headline}."]
    if machine is not None:
        lines.append(
            f"Machine: {machine.display_name} ({machine.id}), workcenter "
            f"{machine.workcenter_code} ({machine.workcenter_key}), PCN {machine.pcn}."
        )
    else:
        lines.append(f"Machine: {machine_id}.")
    window = evidence.get("window", {})
    first, last = window.get("first_ts"), window.get("last_ts")
    if first is not None:
        when = local_time(first, zone)
        if last is not None and last != first:
            when += f" to {local_time(last, zone)}"
        lines.append(f"When: {when}.")
    values = evidence.get("values") or {}
    if values:
        lines.append(f"Values: {_pairs(values)}.")
    state = evidence.get("machine_state") or {}
    if state:
        lines.append(f"Machine state: {_pairs(state)}.")
    params = evidence.get("parameters") or {}
    lines.append(
        f"Rule: {evidence.get('rule')} ({evidence.get('type')}); parameters: "
        f"{_pairs(params) or 'none'}."
    )
    return "\n".join(lines)
