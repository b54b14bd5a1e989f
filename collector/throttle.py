"""One log line per key per period, with the count of the lines it held back.

A burst of bad payloads (a gateway publishing garbage at full rate) dead-letters every
message, and one WARNING per dead letter wrote 26 MB of logs in a 160k-message burst.
The counter ``repsys_collector_dead_letters_total{reason}`` counts every one; the log
only has to say that it is happening and why, so it says so once per reason per period:
the first occurrence at once, the next one a period later with ``suppressed=<n>`` (the
occurrences in between).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class LogThrottle:
    """Decides which occurrences of a key get a log line (thread-safe)."""

    def __init__(self, period_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> (when its last line was logged, occurrences held back since).
        self._state: dict[str, tuple[float, int]] = {}

    def admit(self, key: str) -> int | None:
        """``None``: hold this occurrence back. Else log it, with the held-back count."""
        now = self._clock()
        with self._lock:
            last = self._state.get(key)
            if last is None or now - last[0] >= self.period_s:
                self._state[key] = (now, 0)
                return 0 if last is None else last[1]
            self._state[key] = (last[0], last[1] + 1)
            return None
