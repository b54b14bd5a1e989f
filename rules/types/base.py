"""The contract of a rule type, and helpers every type shares.

Lifecycle of a rule object: the engine builds one per configured rule when the worker
starts (``cls(spec, facts)``), then calls ``on_signal`` for every signal whose name is in
``inputs`` (derived ``cycle_time``, ``tool_change`` and ``pallet_change`` included), of
every machine in the rule's scope, in stream order; and ``on_tick`` every
``worker.tick_interval_s`` for every machine in scope when ``ticks`` is true. A rule does
no I/O: it keeps its per-machine memory in ``m.rules[self.name]`` (JSON values only,
checkpointed with the machine) and reports what it sees through the lifecycle ``ctx``
(``active`` / ``inactive`` for conditions, ``event`` for one-off anomalies, ``forecast``).
An exception escaping a rule is a bug: the engine logs it, counts it, and goes on.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from core.config.rules import RuleBase
from core.model import Signal
from rules.alerts import Lifecycle
from rules.state import MachineState


class Rule(Protocol):
    """A rule type's implementation (one object per configured rule)."""

    name: str
    inputs: frozenset[str]
    ticks: bool
    sees_bad_quality: bool

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        """Evaluate one signal of machine ``m``."""

    def on_tick(self, m: MachineState, ctx: Lifecycle) -> None:
        """Evaluate the passage of time (``ctx.now``) for machine ``m``."""


class BaseRule:
    """Defaults for the protocol's optional parts: no ticks, good-quality signals only.

    A rule type declares, once, on its class: ``spec_model`` (its config model in
    ``core/config/rules.py``, whose ``type: Literal[...]`` is the type's name),
    ``category`` (the ticket category when the rule names none) and, when the category's
    title would mislabel its tickets, ``title``. ``rules.types.REGISTRY`` is built from
    them and refuses, at import, a type without a category.
    """

    spec_model: ClassVar[type[RuleBase]]
    category: ClassVar[str]
    title: ClassVar[str] = ""
    inputs: frozenset[str] = frozenset()
    ticks = False
    sees_bad_quality = False

    def __init__(self, name: str) -> None:
        self.name = name

    def state(self, m: MachineState) -> Any:
        """This rule's memory for machine ``m`` (a dict, created empty)."""
        st = m.rules.get(self.name)
        if st is None:
            st = m.rules[self.name] = {}
        return st

    def on_tick(self, m: MachineState, ctx: Lifecycle) -> None:
        return None


def num(value: Any) -> float | None:
    """A signal value as a number, or None (text, booleans, no value)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float | int):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fmt(value: float) -> str:
    """A number as a technician reads it: ``212``, ``35.5``, ``0.25``."""
    return f"{round(value, 2):g}"


def counter_of(sig: Signal) -> float | None:
    """The tool counter a machining event or tool-life sample carries."""
    if "counter" in sig.attrs:
        return num(sig.attrs["counter"])
    return num(sig.value)


def tool_of(sig: Signal) -> str:
    return sig.subject or sig.attrs.get("tool", "")


#: Points an episode's chart keeps at most (the evidence is stored with the episode).
CHART_POINTS = 200


def chart(name: str, unit: str, points: list[list[float]], **references: float) -> dict[str, Any]:
    """A chart series for an episode's evidence (drawn by ``web/charts.py``).

    ``points`` are ``[source time, value]`` pairs, oldest first; at most
    :data:`CHART_POINTS` of them are kept (every n-th, and always the last, the reading that
    fired). ``references`` are the horizontal lines the value is judged against:
    ``limit``, ``warning``, ``baseline``, ``expected``, ``clear_at``. A rule puts the result
    under ``values["series"]``; the lifecycle lifts it to the evidence's top level.
    """
    if len(points) > CHART_POINTS:
        stride = -(-len(points) // CHART_POINTS)
        points = points[-1 - (CHART_POINTS - 1) * stride :: stride]
    return {"name": name, "unit": unit, "points": points, **references}


def count_points(times: list[float]) -> list[list[float]]:
    """Occurrences as a running count over time: ``[[t1, 1], [t2, 2], ...]``."""
    return [[round(t, 3), float(i)] for i, t in enumerate(times, start=1)]
