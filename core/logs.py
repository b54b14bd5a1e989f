"""Structured logging: a constant snake_case event plus key/value context.

``log.warning("opcua_read_failed", machine="cnc103", errors=3)``. JSON lines in
production (a log pipeline parses them), aligned readable lines on a terminal.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

#: The context keys that say what a warning is about; other keys (ids, errors, payloads)
#: differ on every line and would make each line its own subject.
SUBJECT_KEYS = (
    "reader",
    "source",
    "reason",
    "machine",
    "partition",
    "kind",
    "channel",
    "data_source",
    "schedule",
)


class RateLimiter:
    """A structlog processor: at most ``burst`` warnings per subject per ``window_s``.

    A subject is the event name with the values of :data:`SUBJECT_KEYS` it carries, so
    one poison message repeated 160,000 times logs ``burst`` lines a minute, while a
    different source or reason still logs at once. The first line let through after a
    suppression carries ``suppressed`` (lines dropped since the last one shown). Only
    WARNING and above are limited: info lines tell a ticket's story and are never dropped.
    """

    def __init__(
        self,
        *,
        burst: int = 5,
        window_s: float = 60.0,
        max_subjects: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self.max_subjects = max_subjects
        self.clock = clock
        #: subject -> [window start, lines shown in it, lines suppressed since last shown]
        self._seen: dict[tuple[Any, ...], list[float]] = {}
        self._lock = threading.Lock()  # readers log from their own threads

    def __call__(
        self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if method not in ("warning", "warn", "error", "critical", "exception"):
            return event_dict
        subject = (method, event_dict.get("event"), *(event_dict.get(k) for k in SUBJECT_KEYS))
        now = self.clock()
        with self._lock:
            state = self._seen.get(subject)
            if state is None:
                if len(self._seen) >= self.max_subjects:
                    self._seen.clear()  # bounded memory; at worst a few repeated lines
                state = self._seen[subject] = [now, 0.0, 0.0]
            elif now - state[0] >= self.window_s:
                state[0], state[1] = now, 0.0
            if state[1] >= self.burst:
                state[2] += 1
                raise structlog.DropEvent
            state[1] += 1
            suppressed, state[2] = state[2], 0.0
        if suppressed:
            event_dict["suppressed"] = int(suppressed)
        return event_dict


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Configure structlog and the standard library logging once per process."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        RateLimiter(),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (asyncua, zeep, apscheduler) log through the standard library; keep their
    # chatter at WARNING unless we debug.
    logging.basicConfig(
        level=logging.DEBUG if level == "DEBUG" else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def get_logger(name: str) -> Any:
    """A bound structlog logger named after its module."""
    return structlog.get_logger(name)
