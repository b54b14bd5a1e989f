"""Errors of the history package.

Tree::

    HistoryError (RepsysError)
    ├── HistoryUnavailable (TransientError)   the store or Redis failed; retried with backoff
    └── ConsumerTaken                         another process holds the consumer name (exit 3)
"""

from __future__ import annotations

from core.errors import RepsysError, TransientError


class HistoryError(RepsysError):
    """Root of the history package's errors."""

    reason = "history"


class HistoryUnavailable(HistoryError, TransientError):  # noqa: N818 - reads as a state
    """The object store or Redis failed; the entries stay pending and are retried."""

    reason = "unavailable"


class ConsumerTaken(HistoryError):  # noqa: N818 - reads as a state
    """Another live process holds the consumer name (its token in the message)."""

    reason = "consumer_taken"
