"""What the engine asks the outside world to do: the output of evaluating a batch.

The engine is pure: it turns signals and ticks into these values and changes nothing
outside its state. ``rules/sink.py`` writes them to the database (episodes and tickets in
one transaction), the worker writes forecasts to Redis, ``rules/replay.py`` collects them
in memory for golden cases and backtests. :class:`OpenEpisode` goes the other way: what the
database tells an engine whose checkpoint was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.outbox import episode_ref


@dataclass(frozen=True, slots=True)
class EpisodeDraft:
    """An episode to write: identity, what fired, and its evidence."""

    fingerprint: str
    occurrence: int
    machine: str
    rule: str
    rule_type: str
    subject: str
    severity: str
    summary: str
    evidence: dict[str, Any]
    started: float  # source time of the first anomaly
    last_seen: float  # source time of the latest anomaly


@dataclass(frozen=True, slots=True)
class OpenEpisodes:
    """Episodes of one machine that fired within one group wait, and their one ticket."""

    machine: str
    episodes: tuple[EpisodeDraft, ...]
    title: str
    description: str
    severity: str
    category: str
    kind: str
    reporter: str
    at: float  # engine clock when the group was written

    @property
    def ticket_ref(self) -> str:
        first = self.episodes[0]
        return episode_ref(first.fingerprint, first.occurrence)


@dataclass(frozen=True, slots=True)
class Escalate:
    """A firing episode that keeps recurring: raise its ticket's escalation level."""

    machine: str
    fingerprint: str
    occurrence: int
    ticket_ref: str
    level: int
    repeats: int
    last_seen: float
    at: float
    detail: str


@dataclass(frozen=True, slots=True)
class Resolve:
    """An episode whose condition stayed clear for its keep-firing time."""

    machine: str
    fingerprint: str
    occurrence: int
    ticket_ref: str
    repeats: int
    last_seen: float
    at: float


Action = OpenEpisodes | Escalate | Resolve


@dataclass(frozen=True, slots=True)
class Forecast:
    """An upcoming tool change for the boards; ``minutes`` None removes it from the list."""

    machine: str
    tool: str
    minutes: int | None
    at: float = 0.0  # source time the minutes were computed at (the boards' "as of")


@dataclass(frozen=True, slots=True)
class OpenEpisode:
    """An episode the database holds as firing: what the engine needs to go on with it."""

    machine: str
    fingerprint: str
    occurrence: int
    rule: str
    subject: str
    summary: str
    values: dict[str, Any]
    started: float
    last_seen: float
    repeats: int
    level: int
    ticket_ref: str
