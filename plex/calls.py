"""One Plex call's frame: the shared rate limit, its timing, and every failure classified.

Whatever a SOAP call raises leaves as a :class:`plex.errors.PlexError` with a ``reason``
(the metric label): the transient ones (retry; ``ambiguous`` when Plex may have run the
request) and the rejected ones (dead-letter). :func:`classify` is the table from library
exceptions (requests, urllib3, zeep) to that tree; :func:`metered` applies it around a call
and counts the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import requests
import zeep.exceptions
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from core.errors import TransientError
from core.logs import get_logger
from plex.errors import (
    PlexActionError,
    PlexBadResponseError,
    PlexError,
    PlexFaultError,
    PlexRateLimitedError,
    PlexTimeoutError,
    PlexUnavailableError,
    PlexUnsafeResponseError,
)
from plex.metrics import PlexMetrics

log = get_logger(__name__)


class Limiter(Protocol):
    """The shared rate limit (plex/ratelimit.py); called around every request."""

    def acquire(self) -> None:
        """Block until a call may go; raise PlexRateLimitedError when none comes in time."""

    def back_off(self, seconds: float) -> None:
        """Plex said 429: every sender waits ``seconds`` before the next call."""


@contextmanager
def metered(key: int, limiter: Limiter | None, metrics: PlexMetrics | None) -> Iterator[None]:
    """Rate limit, time, classify and count one SOAP call to data source ``key``."""
    if limiter is not None:
        limiter.acquire()
    started = time.monotonic()
    try:
        try:
            yield
        finally:
            if metrics is not None:
                metrics.request_seconds.labels(str(key)).observe(time.monotonic() - started)
    except PlexError as exc:
        if isinstance(exc, PlexRateLimitedError) and limiter is not None:
            limiter.back_off(exc.retry_after_s)
        _count(metrics, key, exc)
        log.warning("plex_call_failed", data_source=key, reason=exc.reason, error=str(exc))
        raise
    except Exception as exc:
        mapped = classify(exc, key)
        _count(metrics, key, mapped)
        log.warning("plex_call_failed", data_source=key, reason=mapped.reason, error=str(mapped))
        raise mapped from exc
    _count(metrics, key, None)


def _count(metrics: PlexMetrics | None, key: int, exc: PlexError | None) -> None:
    if metrics is None:
        return
    if exc is None:
        metrics.requests.labels(str(key), "ok", "ok").inc()
    else:
        outcome = "transient" if isinstance(exc, TransientError) else "rejected"
        metrics.requests.labels(str(key), outcome, exc.reason).inc()


def _connect_failed(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the TCP connection never opened, so the request was never sent."""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError):
        inner = inner.reason
    return isinstance(inner, NewConnectionError | ConnectTimeoutError)


def classify(exc: Exception, key: int) -> PlexError:  # noqa: PLR0911 - a flat table of cases
    """A library exception as a classified PlexError (re-raised when it is none of them)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return PlexUnavailableError(f"cannot connect to Plex: {exc}", reason="connect_error")
    if isinstance(exc, requests.exceptions.Timeout):
        return PlexTimeoutError(f"no answer from Plex in time (data source {key})")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _connect_failed(exc):
            return PlexUnavailableError(f"cannot connect to Plex: {exc}", reason="connect_error")
        return PlexUnavailableError(
            f"connection to Plex lost after sending: {exc}",
            reason="connection_lost",
            ambiguous=True,
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return PlexUnavailableError(f"HTTP error talking to Plex: {exc}", reason="http_error")
    if isinstance(
        exc,
        zeep.exceptions.DTDForbidden
        | zeep.exceptions.EntitiesForbidden
        | zeep.exceptions.ExternalReferenceForbidden,
    ):
        return PlexUnsafeResponseError(f"refused an unsafe Plex response: {exc}")
    if isinstance(exc, zeep.exceptions.Fault):
        code = str(exc.code or "")
        if code.endswith(("Client", "Sender")):
            return PlexFaultError(f"Plex refused the request: {exc.message}")
        return PlexUnavailableError(
            f"Plex SOAP fault: {exc.message}", reason="soap_fault_server", ambiguous=True
        )
    if isinstance(exc, zeep.exceptions.ValidationError):
        return PlexActionError(f"request does not fit the WSDL: {exc}", reason="bad_request")
    if isinstance(exc, zeep.exceptions.TransportError | zeep.exceptions.Error):
        message = str(exc).split("\nContent:", 1)[0]
        return PlexBadResponseError(f"unreadable Plex response: {message}")
    if isinstance(exc, ValueError | TypeError | AttributeError):
        return PlexBadResponseError(f"unexpected Plex response shape: {exc}")
    raise exc
