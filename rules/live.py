"""Each machine's live state for the web boards (``keys.machine_live``), kept by the rules worker.

The rules worker is the one process that sees every signal of a machine in order and
already knows its run state and whether its data stopped, so it publishes what the
machines board shows: a hash per machine with ``state`` (running / idle / down / no_data,
or the controller's own word when it is none of those), ``state_since`` (source time the
state began), ``updated_at`` (worker clock) and the latest value of every subject-less
signal by its canonical name (``program``, ``part_count``, ``spindle_load``...), and
``fastest_cycle_time``: the plants' fastest cycle of the machine's current program
(configured, else learned start to start on one pallet, DOMAIN.md section 3), the basis
of the jump limit and the tool change forecast, as text (``"57 s"``).

Cost: the worker notes each good signal's value in a dict (one assignment; the value is
turned into text only when written, since most are overwritten before) and, after a
batch but at most every :data:`FLUSH_INTERVAL_S`, writes each machine touched whose board
state changed or whose hash is older than :data:`REFRESH_S` (one pipelined ``HSET`` +
``EXPIRE`` each). Writing every machine on every batch made 500 machines at 10,000
signals/s cost a thousand commands per batch and multiplied the XADD → episode p99
(``bench/rules.py``); the boards reload every 15 s, so values a few seconds old lose
nothing, while a state change is shown within a quarter of a second. The hash
expires after :data:`LIVE_TTL_S` so a dead worker's machines do not keep showing their
last state forever. The hash is advisory: losing a write loses nothing but a refresh.

The worker also keeps the upcoming tool changes board's sorted set
(``keys.UPCOMING_TOOL_CHANGES``) from the forecasts its rules make: :func:`write_forecasts`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import keys
from core.model import Quality, Signal, Value
from core.redis import RedisCommands
from rules.actions import Forecast
from rules.derive import Facts
from rules.engine import Program
from rules.state import MachineState
from rules.types.no_data import NoData

#: Seconds a machine's live hash outlives its last write (a few board refreshes).
LIVE_TTL_S = 300
#: Seconds between two writes of a machine whose board state did not change.
REFRESH_S = 5.0
#: Seconds between two flushes: a flush looks at every machine noted (up to all of them),
#: so once per batch cost the most when batches are small and frequent (a worker keeping
#: up at 10,000 signals/s read every few milliseconds, and spent most of its time here).
FLUSH_INTERVAL_S = 0.25
#: Controller run states (lower case) → the board's state; other words are shown as is.
BOARD_STATES = {
    "executing": "running",
    "active": "running",
    "idle": "idle",
    "stopped": "idle",
    "ready": "idle",
    "not_executing": "idle",
    "notexecuting": "idle",
    "program_stopped": "idle",
    "program_completed": "idle",
    "interrupted": "down",
    "alarm": "down",
    "fault": "down",
    "out_of_service": "down",
    "outofservice": "down",
}
_GOOD = (Quality.GOOD, Quality.UNCERTAIN)
#: Board states that an alarm still standing turns into "down".
_STOPPED = frozenset({"idle", "unknown"})


def alarm_stands(m: MachineState) -> bool:
    """Whether the machine's last alarm was raised and not yet cleared.

    ``last_alarm`` is ``[code, text, source time, standing]``; a checkpoint written before
    the fourth item existed says nothing about it, and nothing is assumed.
    """
    alarm = m.last_alarm
    return alarm is not None and len(alarm) > 3 and alarm[3] is True


def board_state(run_state: str) -> str:
    """The board's word for a controller run state (``""`` when none was reported)."""
    if not run_state:
        return "unknown"
    word = run_state.strip().lower()
    return BOARD_STATES.get(word, word)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class LiveBoard:
    """The latest values seen since the last flush, and each machine's board state."""

    def __init__(
        self,
        no_data_rules: frozenset[str],
        *,
        ttl_s: int = LIVE_TTL_S,
        refresh_s: float = REFRESH_S,
        interval_s: float = FLUSH_INTERVAL_S,
        facts: Facts | None = None,
    ) -> None:
        #: Alert keys (``rule\\x1f``) of the no_data rules: while one is active, no data.
        self._no_data_keys = tuple(f"{name}\x1f" for name in sorted(no_data_rules))
        self.ttl_s = ttl_s
        self.refresh_s = refresh_s
        self.interval_s = interval_s
        #: The machines' facts, for the fastest cycle time (None: not shown).
        self.facts = facts
        #: Clock time of the last flush that looked at the machines.
        self.flushed_at: float | None = None
        #: Values noted since each machine's last write (kept until it is written).
        self.values: dict[str, dict[str, Value]] = {}
        #: machine → (state, since, written at) last published: a state keeps its start.
        self.published: dict[str, tuple[str, float, float]] = {}

    @classmethod
    def for_program(cls, program: Program) -> LiveBoard:
        no_data = frozenset(r.name for r in program.rules if isinstance(r, NoData))
        return cls(no_data, facts=program.facts)

    def note(self, sig: Signal) -> None:
        """Remember a signal's value (after the engine processed it)."""
        values = self.values.get(sig.machine)
        if values is None:
            values = self.values[sig.machine] = {}
        # A bad sample or a subject's value (one tool of forty) is not a tile's value,
        # but the machine was touched: its state is still refreshed.
        if not sig.subject and sig.value is not None and sig.quality in _GOOD:
            values[sig.name] = sig.value

    def _state(self, m: MachineState) -> tuple[str, float]:
        for key in self._no_data_keys:
            alert = m.alerts.get(key)
            if alert is not None and alert.active:
                return "no_data", alert.started
        state = board_state(m.run_state)
        if state in _STOPPED and alarm_stands(m):
            # Stopped with an alarm standing is a breakdown, whatever word the controller
            # uses for its run state (FANUC and the simulated plant say "stopped").
            return "down", m.run_since
        return state, m.run_since

    def flush(
        self,
        redis: RedisCommands,
        engines: list[dict[str, MachineState]],
        now: float,
        *,
        force: bool = False,
    ) -> int:
        """Write the hash of every machine noted since the last flush; machines written.

        ``engines`` are the machine states of the partitions held: a machine in none of
        them (unknown, or its partition just lost) is not written. Within
        ``interval_s`` of the last flush nothing is done unless ``force`` (the end of a
        one-shot run): the values wait for the next.
        """
        if not self.values:
            return 0
        if not force and self.flushed_at is not None and now - self.flushed_at < self.interval_s:
            return 0
        self.flushed_at = now
        pipe = redis.pipeline(transaction=False)
        written = 0
        waiting: dict[str, dict[str, Value]] = {}
        for machine, values in self.values.items():
            m = next((ms[machine] for ms in engines if machine in ms), None)
            if m is None:
                continue
            state, since = self._state(m)
            prev = self.published.get(machine)
            if prev is not None and prev[0] == state:
                if now - prev[2] < self.refresh_s:
                    waiting[machine] = values  # unchanged and fresh: written a bit later
                    continue
                if state != "no_data":
                    since = prev[1]  # e.g. stopped → ready: still idle since the same moment
            self.published[machine] = (state, since, now)
            fields = {name: _text(value) for name, value in values.items()}
            fields["state"] = state
            fastest = self.facts.fastest_cycle(m) if self.facts is not None else None
            if fastest is not None:
                fields["fastest_cycle_time"] = f"{round(fastest, 1):g} s"
            fields["state_since"] = repr(float(since or now))
            fields["updated_at"] = repr(float(now))
            key = keys.machine_live(machine)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.ttl_s)
            written += 1
        self.values = waiting
        if written:
            pipe.execute()
        return written


class LivePublisher:
    """The worker's side of the boards: what it notes, flushes and forecasts, on its Redis.

    ``note`` runs for every signal (the board's own method, no call in between);
    ``flush`` after a batch (the board decides whether it is time); ``forecasts`` after
    a commit.
    """

    def __init__(self, redis: RedisCommands, board: LiveBoard, clock: Callable[[], float]) -> None:
        self.redis = redis
        self.board = board
        self.clock = clock
        self.note = board.note

    def flush(self, engines: list[dict[str, MachineState]], *, force: bool = False) -> int:
        """Write the hashes of the machines noted (of ``engines``); machines written."""
        return self.board.flush(self.redis, engines, self.clock(), force=force)

    def forecasts(self, forecasts: list[Forecast]) -> None:
        write_forecasts(self.redis, forecasts)


def write_forecasts(redis: RedisCommands, forecasts: list[Forecast]) -> None:
    """Minutes to each tool's next change, member ``machine|tool``, and when they were
    computed (the boards' "as of"); both gone when none is due."""
    pipe = redis.pipeline(transaction=False)
    for f in forecasts:
        member = f"{f.machine}|{f.tool}"
        if f.minutes is None:
            pipe.zrem(keys.UPCOMING_TOOL_CHANGES, member)
            pipe.hdel(keys.UPCOMING_TOOL_CHANGES_AT, member)
        else:
            pipe.zadd(keys.UPCOMING_TOOL_CHANGES, {member: f.minutes})
            pipe.hset(keys.UPCOMING_TOOL_CHANGES_AT, member, repr(float(f.at)))
    pipe.execute()
