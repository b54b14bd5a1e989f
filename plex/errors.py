"""Errors of the ``plex`` package, classified where they happen.

Transient errors are retried with backoff; rejected ones dead-letter the ticket with their
``reason`` (a bounded word, also the metric label). ``ambiguous`` says the request may have
reached Plex and been committed although no answer came back: the sender then looks the
ticket up by its reference before it sends it again.

Tree::

    PlexError (core RepsysError)
    ├── PlexTransientError (TransientError)          retry with backoff
    │   ├── PlexUnavailableError    connect_error, http_5xx, soap_fault_server   (5xx: ambiguous)
    │   ├── PlexTimeoutError        timeout                                      (ambiguous)
    │   ├── PlexBadResponseError    malformed_response                           (ambiguous)
    │   ├── PlexAuthError      auth (401/403: the account, not the ticket, is wrong)
    │   └── PlexRateLimitedError    rate_limited (429; retry_after_s), rate_limit_wait
    └── PlexRejectedError (RejectedError)            dead-letter with the reason
        ├── PlexDataSourceError  data_source_error (Error=true body; ErrorNo, StatusNo, ...)
        ├── PlexUnsafeResponseError   unsafe_xml (a DTD, entity or external reference)
        ├── PlexFaultError            soap_fault_client (Plex refused the request's shape)
        └── PlexActionError      no_action, bad_template, bad_result (our side)
"""

from __future__ import annotations

from core.errors import RejectedError, RepsysError, TransientError


class PlexError(RepsysError):
    """Root of every error the ``plex`` package raises."""

    reason = "plex"
    #: True when the request may have been committed by Plex without us knowing.
    ambiguous: bool = False


class PlexTransientError(PlexError, TransientError):
    """Worth retrying later."""

    reason = "transient"


class PlexUnavailableError(PlexTransientError):
    """Plex could not be reached, or answered 5xx / a server-side SOAP fault."""

    reason = "connect_error"

    def __init__(self, message: str, *, reason: str | None = None, ambiguous: bool = False):
        super().__init__(message, reason=reason)
        self.ambiguous = ambiguous


class PlexTimeoutError(PlexTransientError):
    """The request was sent and no answer came in time: it may have been committed."""

    reason = "timeout"
    ambiguous = True


class PlexBadResponseError(PlexTransientError):
    """The answer was not a readable SOAP response (truncated, not XML)."""

    reason = "malformed_response"
    ambiguous = True


class PlexAuthError(PlexTransientError):
    """HTTP 401/403: the web-service account or its grants are wrong; the ticket is fine."""

    reason = "auth"


class PlexRateLimitedError(PlexTransientError):
    """Plex said 429, or our shared limit gave no slot in time."""

    reason = "rate_limited"

    def __init__(
        self, message: str, *, retry_after_s: float = 0.0, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


class PlexRejectedError(PlexError, RejectedError):
    """Retrying will not help: dead-letter with the reason."""

    reason = "rejected"


class PlexDataSourceError(PlexRejectedError):
    """``Error=true`` in the result body: the data source itself failed."""

    reason = "data_source_error"

    def __init__(
        self,
        message: str,
        *,
        error_no: int = 0,
        status_no: int = 0,
        instance_no: str = "",
        data_source_key: int = 0,
    ) -> None:
        super().__init__(message)
        self.error_no = error_no
        self.status_no = status_no
        self.instance_no = instance_no
        self.data_source_key = data_source_key


class PlexTransientDataSourceError(PlexTransientError):
    """``Error=true`` with an ErrorNo configured as transient (``transient_error_numbers``)."""

    reason = "data_source_transient"

    def __init__(self, message: str, *, error_no: int = 0, instance_no: str = "") -> None:
        super().__init__(message)
        self.error_no = error_no
        self.instance_no = instance_no


class PlexUnsafeResponseError(PlexRejectedError):
    """The answer carried a DTD, an entity declaration or an external reference."""

    reason = "unsafe_xml"


class PlexFaultError(PlexRejectedError):
    """A SOAP fault blaming the request (``soap:Client`` / ``soap12:Sender``)."""

    reason = "soap_fault_client"


class PlexActionError(PlexRejectedError):
    """Our side cannot build the call or read its result (no action for a kind, ...)."""

    reason = "bad_action"
