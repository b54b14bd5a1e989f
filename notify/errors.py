"""Errors of the ``notify`` package.

::

    NotifyError (reason, transient)
     ├── transient=True   retried with backoff: relay or webhook unreachable, SMTP 4xx,
     │                    HTTP 429 / 5xx, a timeout
     └── transient=False  dead-lettered with the reason: recipients refused, SMTP 5xx,
                          HTTP 4xx, an unknown receiver or integration

The ``reason`` is a metric label (``repsys_notify_failed_total{reason}``) and the
``last_error_reason`` of the delivery row.
"""

from __future__ import annotations

from core.errors import RepsysError


class NotifyError(RepsysError):
    """A delivery failed; ``transient`` says whether a retry may succeed."""

    def __init__(self, message: str, *, reason: str, transient: bool = True) -> None:
        super().__init__(message, reason=reason)
        self.transient = transient
