"""Base errors of RepSys.

Every package has one root exception deriving from :class:`RepsysError`; failures are
classified where they happen as *transient* (worth retrying) or *rejected* (retrying will
not help: dead-letter it), each carrying a short ``reason`` that becomes a metric label.

Tree::

    RepsysError
    ├── ConfigError              bad configuration; the CLI prints it and exits 2
    ├── TransientError           retry with backoff (network, timeouts, 5xx, locks)
    └── RejectedError            do not retry; record the reason (bad payload, business error)
"""

from __future__ import annotations


class RepsysError(Exception):
    """Root of every error RepSys raises on purpose."""

    #: A short, bounded, snake_case word used as a metric label.
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(RepsysError):
    """Configuration that cannot be used. ``str()`` is ``FILE: key.path: reason``."""

    reason = "config"

    def __init__(self, message: str, *, file: str = "", path: str = "") -> None:
        self.file = file
        self.path = path
        parts = [p for p in (file, path) if p]
        super().__init__(": ".join([*parts, message]))


class TransientError(RepsysError):
    """A failure that may go away by itself: retry with backoff."""

    reason = "transient"


class RejectedError(RepsysError):
    """A failure that will not go away by retrying: dead-letter with the reason."""

    reason = "rejected"
