"""Tool-life run accounting per (workcenter, tool var), as the plants' UDP service kept it.

A *run* is one tool's life between two tool changes. Okuma counters give the tool's
counter at each END_MACHINING; this module turns the sequence of counters into the
plants' figures (``../shared/DOMAIN.md``, "Okuma tool-life run accounting"):

- A reading of ``0``, ``Increment_By`` or ``2 * Increment_By`` *below the previous
  reading* is a tool change: the finished run's quantity is its running total, and a
  tool-life record is due only if the whole run was watched (``Running_Entire_Time``).
  ``Zero_Detect`` / ``Increment_By_Check`` say which of the readings showed the change.
- The first reading after the collector started begins a watched run only when it is one
  of those three values (a fresh tool); any other value is a run first seen mid-way: its
  quantity is unknown, so it is never recorded.
- The running total grows by what the counter counted (the difference, so a datagram
  lost in between does not shorten the run), and by one increment for a reading below
  the previous one that is not a change: a counter rolled back (non-aluminum jobs) still
  machined a part, and a tool life raised in ``OTLM`` (aluminum jobs) just lets the
  counter go on; neither ends the run. The same reading again adds nothing.

A rollback *to* ``0``, ``Increment_By`` or ``2 * Increment_By`` cannot be told from a tool
change by its counter: it ends the run, as it did in the plants' service.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple


class Reading(NamedTuple):
    """What one END_MACHINING reading means for its tool's run (a named tuple: one is
    built per END, and a frozen dataclass's ``__init__`` cost more than the accounting)."""

    running_total: int | float
    running_entire_time: bool
    increment_by_check: bool
    zero_detect: bool
    #: The run this reading ended: (quantity, watched from its start), else None.
    finished: tuple[int | float, bool] | None = None
    #: The counter advanced by more than one increment: readings may have been lost.
    skipped: bool = False


class ToolRun:
    """One (workcenter, tool var)'s current run."""

    __slots__ = ("current", "entire", "increment", "total")

    def __init__(self, increment: int) -> None:
        self.increment = increment
        self.current: int | float | None = None
        self.total: int | float = 0
        self.entire = False

    def state(self) -> list[int | float | bool | None]:
        """What a restart needs of this run: ``[current, total, entire]`` (JSON-ready)."""
        return [self.current, self.total, self.entire]

    def state_json(self) -> str:
        """``json.dumps(self.state())``, written out: it runs for every END's run (the
        values are ints, finite floats, None and a bool, whose JSON texts are known)."""
        current, total = self.current, self.total
        if (type(current) is float and not math.isfinite(current)) or (
            type(total) is float and not math.isfinite(total)
        ):
            return json.dumps(self.state())  # Infinity, NaN: json's own spelling
        text = "null" if current is None else repr(current)
        return f"[{text}, {total!r}, {'true' if self.entire else 'false'}]"

    @classmethod
    def restored(cls, increment: int, state: list[object]) -> ToolRun | None:
        """A run from :meth:`state`'s list; None when the list is not one."""
        if len(state) != 3:
            return None
        current, total, entire = state
        number = (int, float)
        if not (current is None or isinstance(current, number)) or isinstance(current, bool):
            return None
        if not isinstance(total, number) or isinstance(total, bool) or not isinstance(entire, bool):
            return None
        run = cls(increment)
        run.current, run.total, run.entire = current, total, entire
        return run

    def observe(self, counter: int | float) -> Reading:
        """Account one END_MACHINING counter reading (see the module docstring)."""
        inc = self.increment
        fresh = counter in (0, inc, 2 * inc)
        previous = self.current
        self.current = counter
        if previous is None or (fresh and counter < previous):
            finished = None if previous is None else (self.total, self.entire)
            self.total = counter
            self.entire = fresh
            zero = fresh and counter == 0
            return Reading(counter, fresh, fresh and not zero, zero, finished)
        skipped = False
        if counter > previous:
            skipped = counter - previous > inc
            self.total += counter - previous
        elif counter < previous:
            self.total += inc  # rolled back: the event still machined one increment
        return Reading(self.total, self.entire, False, False, None, skipped)
