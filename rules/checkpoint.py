"""Checkpoints: each held partition's rule state, written with the acknowledgement of its entries.

A partition's state hash holds one blob per machine (``Engine.checkpoint``: only those
changed since the last) and, under :data:`PROGRESS_FIELD`, the last entry the state
reflects. It is written in one Lua step with the ``XACK`` of the entries evaluated since
(``PartitionStream.checkpoint``), and only by the lease holder: after a crash every entry
is either reflected in the state and acknowledged, or pending and replayed.

A partition is checkpointed every ``checkpoint_interval_s``, one partition per loop
iteration (:meth:`Checkpoints.due`): checkpointing every partition at the same moment
would stall evaluation, and delay episodes, for as long as it takes to serialize and write
them all. Past ``max_unacked`` entries awaiting acknowledgement, all of them are written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from core.config.rules import RulesWorkerConfig
from rules.engine import Engine
from rules.metrics import RulesMetrics
from rules.stream import PartitionStream, entry_key

#: Field of a partition's state hash holding its progress (not a machine id).
PROGRESS_FIELD = "_progress"


@dataclass
class Held:
    """A partition this worker holds: its engine, and what awaits the next checkpoint."""

    p: int
    engine: Engine
    progress: tuple[int, int] = (0, 0)  # last entry reflected in the state
    progress_id: str = ""
    unacked: list[str] = field(default_factory=list)
    last_seen: str = "0-0"  # last entry id known, to block on when idle
    oldest_rx: float = 0.0  # receive time of the oldest entry evaluated since the commit
    checkpoint_due: float = 0.0  # clock time of its next regular checkpoint

    @classmethod
    def resumed(cls, p: int, engine: Engine, progress_id: str) -> Held:
        """A partition taken with its checkpoint's progress (``""``: none)."""
        progress = entry_key(progress_id) if progress_id else (0, 0)
        return cls(p, engine, progress=progress, progress_id=progress_id)


@dataclass
class Kept:
    """The engines of the partitions held when Redis went away, kept for a while.

    They are the state :meth:`rules.worker.RulesWorker._take` uses when Redis lost a
    partition's (a restart without persistence). Until ``until`` the worker takes back only
    these partitions, so the other workers have the time to come back for theirs: taken by
    another worker, a partition whose state Redis lost starts empty (decision 0460).
    """

    engines: dict[int, Held] = field(default_factory=dict)
    partitions: set[int] = field(default_factory=set)
    until: float = 0.0

    def keep(self, held: Mapping[int, Held], until: float) -> None:
        """Keep ``held`` too (engines kept earlier and not taken back yet stay)."""
        self.engines.update(held)
        self.partitions |= set(held)
        self.until = until

    def pop(self, p: int) -> Held | None:
        return self.engines.pop(p, None)

    def only(self, free: list[int], now: float) -> list[int]:
        """``free`` as this worker may take it now."""
        if self.partitions and now < self.until:
            return [p for p in free if p in self.partitions]
        return free

    def expire(self, now: float) -> None:
        """Past ``until``: what was not taken back is another worker's now."""
        if self.partitions and now >= self.until:
            self.engines.clear()
            self.partitions = set()


class Checkpoints:
    """Reads and writes the checkpoints of the partitions one worker holds."""

    def __init__(
        self,
        stream: PartitionStream,
        worker_id: str,
        wcfg: RulesWorkerConfig,
        metrics: RulesMetrics,
        *,
        clock: Callable[[], float],
        lost: Callable[[int], None],
    ) -> None:
        self.stream = stream
        self.worker_id = worker_id
        self.lease_ms = int(wcfg.lease_ttl_s * 1000)
        self.interval_s = wcfg.checkpoint_interval_s
        self.max_unacked = wcfg.max_unacked
        self.metrics = metrics
        self.clock = clock
        #: Called with a partition whose lease was gone when its checkpoint was written.
        self.lost = lost
        self._next_gauge = 0.0

    def load(self, p: int) -> tuple[dict[str, str], str]:
        """Partition ``p``'s checkpoint: the machines' blobs, and the last entry id they
        reflect (``""`` when none was written)."""
        blobs = self.stream.load_state(p)
        progress = blobs.pop(PROGRESS_FIELD, None)
        return blobs, str(json.loads(progress)["id"]) if progress else ""

    def write(self, held: Held) -> bool:
        """Checkpoint one partition; False (and ``lost`` called) when its lease was gone."""
        state = held.engine.checkpoint()
        if held.progress_id:
            state[PROGRESS_FIELD] = json.dumps(
                {"id": held.progress_id, "worker": self.worker_id, "at": self.clock()}
            )
        if not state and not held.unacked:
            return True
        ok = self.stream.checkpoint(held.p, state, held.unacked, self.lease_ms)
        if not ok:
            self.lost(held.p)
            return False
        held.unacked = []
        self.metrics.checkpoints.inc()
        return True

    def due(self, held: Mapping[int, Held], now: float) -> None:
        """Checkpoint the partition whose turn it is (all of them past ``max_unacked``)."""
        pending = sum(len(h.unacked) for h in held.values())
        if pending >= self.max_unacked:
            self.all(held)
            return
        due = [h for h in held.values() if h.checkpoint_due <= now]
        if due:
            first = min(due, key=lambda h: h.checkpoint_due)
            first.checkpoint_due = now + self.interval_s
            self.write(first)
        if now >= self._next_gauge:
            self._next_gauge = now + self.interval_s
            self._gauge(held)

    def all(self, held: Mapping[int, Held]) -> None:
        """Checkpoint every partition held."""
        for h in list(held.values()):
            self.write(h)
        self._gauge(held)

    def _gauge(self, held: Mapping[int, Held]) -> None:
        self.metrics.episodes_open.set(sum(h.engine.episodes_open() for h in held.values()))
