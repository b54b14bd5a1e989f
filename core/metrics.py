"""Helpers for Prometheus metrics built on an injected registry.

Each package builds its metrics in its own ``metrics.py`` as a class taking a
``CollectorRegistry``; tests pass a fresh registry and read values back with
:func:`sample`. Names follow ``repsys_<component>_<noun>_<unit|total>``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector

__all__ = ["CollectorRegistry", "new_registry", "sample"]


def new_registry() -> CollectorRegistry:
    """A fresh registry (one per process, one per test), with the process's own metrics.

    ``process_start_time_seconds`` is what the restart-loop alert counts changes of; the
    other ``process_*`` series (memory, CPU, open files) come with it.
    """
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry


def sample(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample, 0.0 when it does not exist yet."""
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)
