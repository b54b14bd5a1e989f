"""Errors of the collector, classified where they happen.

Tree::

    CollectorError (core.errors.RepsysError)
    ├── SourceUnavailableError (+ TransientError)  a server or broker cannot be reached, or a
    │                                          session died; the supervisor reconnects with
    │                                          backoff. reason: connect, session, watchdog,
    │                                          resolve
    ├── PayloadRejectedError (+ RejectedError)      a message that cannot become signals; it goes
    │                                          to the dead-letter stream with its reason:
    │                                          not_json, not_object, bad_value, not_finite,
    │                                          too_large, unknown_topic, unknown_machine,
    │                                          missing_field, bad_timestamp; and
    │                                          internal_error for any other exception a
    │                                          decoder raised (a bug: see rejection())
    └── SinkUnavailableError (+ TransientError)     Redis is unreachable; signals stay buffered
                                               and the write is retried in order
"""

from __future__ import annotations

from core.errors import RejectedError, RepsysError, TransientError


class CollectorError(RepsysError):
    """Root of every error the collector raises on purpose."""

    reason = "collector"


class SourceUnavailableError(CollectorError, TransientError):
    """A source cannot be read right now; reconnect with backoff."""

    reason = "connect"


class PayloadRejectedError(CollectorError, RejectedError):
    """A payload that does not decode; dead-letter it with ``reason``."""

    reason = "bad_value"


class SinkUnavailableError(CollectorError, TransientError):
    """Redis cannot take the batch now; keep it buffered and retry."""

    reason = "redis"


#: The dead-letter reason of an exception no decoder meant to raise.
INTERNAL_ERROR = "internal_error"


def rejection(exc: Exception) -> tuple[str, str]:
    """A decoding failure's dead-letter ``(reason, error)``.

    A :class:`PayloadRejectedError` carries its own reason. Any other exception is a
    decoder's bug that a payload found (an ``OverflowError`` on ``1e400``, say): the
    message is dead-lettered as ``internal_error`` with the exception's type and text,
    so that the reader's loop (paho's network thread, the OPC UA consumer) goes on.
    """
    if isinstance(exc, PayloadRejectedError):
        return exc.reason, str(exc)
    return INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
