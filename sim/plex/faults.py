"""Which fault (if any) the simulated Plex injects into the next request.

Two sources, checked in order: a queue of forced faults (a test says "the next two
requests answer 429"), then seeded dice with the configured probabilities. Both can be
changed at run time through the admin endpoint. Every drawn fault is counted.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from core.config.sim_plex import FAULT_KINDS, SimFaultsConfig


class FaultPlan:
    """Draws faults; thread-safe."""

    def __init__(self, cfg: SimFaultsConfig) -> None:
        self._lock = threading.Lock()
        self._cfg = cfg
        self._rng = random.Random(cfg.seed)
        self._queue: list[str] = []
        self.counts: Counter[str] = Counter()

    @property
    def cfg(self) -> SimFaultsConfig:
        with self._lock:
            return self._cfg

    def configure(self, changes: dict[str, Any]) -> SimFaultsConfig:
        """Apply new probabilities / settings (validated); ``queue`` appends forced faults.

        Raises ``ValueError`` (pydantic's) on a bad value or an unknown fault kind.
        """
        changes = dict(changes)
        queue = changes.pop("queue", [])
        if not isinstance(queue, list) or any(q not in FAULT_KINDS for q in queue):
            raise ValueError(f"queue must be a list of {', '.join(FAULT_KINDS)}")
        with self._lock:
            merged = {**self._cfg.model_dump(), **changes}
            cfg = SimFaultsConfig.model_validate(merged)
            if cfg.seed != self._cfg.seed:
                self._rng = random.Random(cfg.seed)
            self._cfg = cfg
            self._queue.extend(queue)
            return cfg

    def reset(self, cfg: SimFaultsConfig) -> None:
        with self._lock:
            self._cfg = cfg
            self._rng = random.Random(cfg.seed)
            self._queue.clear()
            self.counts.clear()

    def draw(self) -> str | None:
        """The fault for the next request, or ``None``."""
        with self._lock:
            if self._queue:
                fault: str | None = self._queue.pop(0)
            else:
                roll = self._rng.random()
                fault = None
                edge = 0.0
                for kind in FAULT_KINDS:
                    edge += float(getattr(self._cfg, kind))
                    if roll < edge:
                        fault = kind
                        break
            if fault is not None:
                self.counts[fault] += 1
            return fault

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._cfg.model_dump(),
                "queue": list(self._queue),
                "counts": dict(self.counts),
            }
