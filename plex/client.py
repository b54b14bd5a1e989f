"""The Plex SOAP client: one hardened zeep client per process, typed results.

Why it looks the way it does:

* Plex no longer serves its WSDL, so the one in ``plex/wsdl/`` is loaded from disk.
* zeep has no timeouts by default: connect and operation timeouts are explicit.
* The transport retries only a failed *connect*. A request that reached Plex is never
  resent here, because Plex may have committed it; the sender decides (it looks up).
* Responses are parsed with DTDs, entities, external references and huge trees refused
  (``zeep.Settings``): an answer that tries is :class:`PlexUnsafeResponseError`.
* Answers are read by element name with lxml (plex/response.py), not by zeep's strict
  xsd objects: Plex adds fields to its results over the years, and a real answer carries
  fields a fixed shape does not know; zeep also costs seconds on big data sources. What
  is not a result (a Fault, HTTP errors, bad XML) still goes through zeep's reply
  processing, so it is raised and classified as zeep raises it.
* Plex reports a data-source failure *in the body* (``Error`` true, with ``StatusNo``,
  ``ErrorNo``, ``Message``, ``InstanceNo``), not as a SOAP fault: that becomes
  :class:`PlexDataSourceError` (rejected) unless its ErrorNo is configured as transient.
* The client refuses to be built when the configured environment and the endpoint host
  disagree (:func:`core.config.plex.endpoint_problem`): a test configuration never talks
  to production, and only the ``simulator`` environment may use a loopback endpoint.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests
import zeep
import zeep.exceptions
import zeep.loader
from lxml import etree
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from core.config.plex import PlexConfig, endpoint_problem
from core.errors import ConfigError, TransientError
from core.logs import get_logger
from plex.errors import (
    PlexActionError,
    PlexAuthError,
    PlexBadResponseError,
    PlexDataSourceError,
    PlexError,
    PlexFaultError,
    PlexRateLimitedError,
    PlexTimeoutError,
    PlexTransientDataSourceError,
    PlexUnavailableError,
    PlexUnsafeResponseError,
)
from plex.metrics import PlexMetrics
from plex.response import (
    NAMESPACE,
    MalformedResultError,
    ResultFields,
    fields_from_zeep,
    read_result,
    read_template,
)

log = get_logger(__name__)

_SOAP_MEDIA_TYPES = ("text/xml", "application/soap+xml")
WSDL_PATH = Path(__file__).resolve().parent / "wsdl" / "DataSource.wsdl"
_BINDINGS = {"1.1": f"{{{NAMESPACE}}}ServiceSoap", "1.2": f"{{{NAMESPACE}}}ServiceSoap12"}
#: Elements of Plex's answers already logged as unknown by this process (logged once each).
_UNKNOWN_LOGGED: set[str] = set()


def _note_unknown(names: tuple[str, ...], key: int) -> None:
    """Log each element RepSys skipped once per process: Plex added a field, nothing broke."""
    for name in names:
        if name not in _UNKNOWN_LOGGED:
            _UNKNOWN_LOGGED.add(name)
            log.debug("plex_response_unknown_element", element=name, data_source=key)


@dataclass(frozen=True)
class DataSourceResult:
    """One data source's answer. Every value is a string, as Plex sends it.

    Attributes:
        result_sets: each result set's rows; a row maps column name to value in column
            order, so ``list(row.values())[i]`` is the column at position ``i + 1``.
        output_parameters: output parameter name -> value.
        instance_no: Plex's instance number of the call (for support tickets).
        message: Plex's message, ``"Success"`` when all went well.
    """

    data_source_key: int
    data_source_name: str
    result_sets: list[list[dict[str, str]]] = field(default_factory=list)
    output_parameters: dict[str, str] = field(default_factory=dict)
    instance_no: str = ""
    message: str = ""
    status_no: int = 0

    @property
    def rows(self) -> list[dict[str, str]]:
        """The first result set's rows (empty when Plex sent none)."""
        return self.result_sets[0] if self.result_sets else []


class Limiter(Protocol):
    """The shared rate limit (plex/ratelimit.py); called around every request."""

    def acquire(self) -> None:
        """Block until a call may go; raise PlexRateLimitedError when none comes in time."""

    def back_off(self, seconds: float) -> None:
        """Plex said 429: every sender waits ``seconds`` before the next call."""


def retry_after_seconds(value: str | None, *, default: float = 1.0) -> float:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110)."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


class _CheckedSession(requests.Session):
    """A session that turns HTTP statuses into classified errors before zeep parses.

    zeep's own ``TransportError`` carries no headers, and 429's ``Retry-After`` is one;
    zeep's transport posts through this session, so the check sits here. It also holds
    the two rules on where and how long a call may go:

    - **No redirects.** requests follows them itself (urllib3's ``Retry(redirect=0)`` does
      not stop it) and would re-post the SOAP body, Basic auth included, to wherever the
      ``Location`` points, past the environment guard. A 3xx is an error here.
    - **A total deadline** (``deadline_s``: connect, send and read together). The socket
      timeouts bound each read, not the call: a server that drips its answer could hold
      a call past the sender's claim, and then another sender may file the ticket again.
    """

    def __init__(self, deadline_s: float) -> None:
        super().__init__()
        self.deadline_s = deadline_s

    def post(self, url: str | bytes, data: Any = None, json: Any = None, **kwargs: Any) -> Any:
        kwargs["allow_redirects"] = False
        response = self._post_within_deadline(url, data, json, kwargs)
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("Location", "-")
            raise PlexUnavailableError(
                f"Plex answered HTTP {status} to {location}: redirects are not followed "
                "(check plex.endpoint)",
                reason="http_redirect",
            )
        if status in (401, 403):
            raise PlexAuthError(f"Plex refused the credentials (HTTP {status})")
        if status == 429:
            seconds = retry_after_seconds(response.headers.get("Retry-After"))
            raise PlexRateLimitedError(
                f"Plex rate limit (HTTP 429, Retry-After {seconds:g} s)", retry_after_s=seconds
            )
        is_xml = "xml" in response.headers.get("Content-Type", "")
        if status >= 500 and not is_xml:
            # Not a SOAP fault: a proxy or the server broke, perhaps after committing.
            raise PlexUnavailableError(
                f"Plex answered HTTP {status}", reason="http_5xx", ambiguous=True
            )
        if 300 <= status < 500 and not is_xml:
            raise PlexUnavailableError(f"Plex answered HTTP {status}", reason="http_status")
        return response

    def _post_within_deadline(
        self, url: str | bytes, data: Any, json: Any, kwargs: dict[str, Any]
    ) -> requests.Response:
        """``Session.post`` in a thread of its own, given up on at the deadline.

        A blocked socket read cannot be interrupted from outside; the abandoned thread ends
        at its own socket timeout, and its connection is dropped rather than reused.
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["response"] = super(_CheckedSession, self).post(
                    url, data=data, json=json, **kwargs
                )
            except BaseException as exc:  # handed to the caller below, whatever it is
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=call, name="plex-call", daemon=True).start()
        if not done.wait(self.deadline_s):
            self.close()  # idle connections go; the stuck one is closed when it returns
            raise requests.exceptions.ReadTimeout(
                f"no complete answer within the {self.deadline_s:g} s deadline"
            )
        if "error" in box:
            raise box["error"]
        response: requests.Response = box["response"]
        return response


def _connect_failed(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the TCP connection never opened, so the request was never sent."""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError):
        inner = inner.reason
    return isinstance(inner, NewConnectionError | ConnectTimeoutError)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class PlexClient:
    """Calls Plex data sources over SOAP. Not shared between threads: one per worker."""

    def __init__(
        self,
        cfg: PlexConfig,
        *,
        metrics: PlexMetrics | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        problem = endpoint_problem(cfg.environment, cfg.endpoint)
        if problem:
            raise ConfigError(problem, path="plex.endpoint")
        self.cfg = cfg
        self.metrics = metrics
        self.limiter = limiter
        self.session = _CheckedSession(deadline_s=cfg.operation_timeout_s)
        retry = Retry(
            total=cfg.connect_retries,
            connect=cfg.connect_retries,
            read=0,
            status=0,
            other=0,
            redirect=0,
            backoff_factor=0.2,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if cfg.username or cfg.password is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else ""
            self.session.auth = (cfg.username, password)
        # zeep ships py.typed without annotations: its API is used through Any.
        z: Any = zeep
        transport = z.Transport(
            session=self.session,
            timeout=cfg.connect_timeout_s,
            operation_timeout=(cfg.connect_timeout_s, cfg.operation_timeout_s),
        )
        settings = z.Settings(
            strict=True,
            xml_huge_tree=False,
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
        wsdl = cfg.wsdl or str(WSDL_PATH)
        self._zeep: Any = z.Client(wsdl, transport=transport, settings=settings)
        self._service = self._zeep.create_service(_BINDINGS[cfg.soap_version], cfg.endpoint)
        self._input_type = self._zeep.get_type(f"{{{NAMESPACE}}}InputParameter")

    def close(self) -> None:
        self.session.close()

    def build_request(
        self, key: int, params: Mapping[str, str], *, name: str | None = None
    ) -> dict[str, Any]:
        """The ``ExecuteDataSourceRequest`` for ``key`` (inputs in the given order)."""
        inputs = [
            self._input_type(Value=str(v), Name=n, Required=False, Output=False)
            for n, v in params.items()
        ]
        request: dict[str, Any] = {"DataSourceKey": str(key)}
        if inputs:
            request["InputParameters"] = {"InputParameter": inputs}
        if name:
            request["DataSourceName"] = name
        return request

    def envelope(self, key: int, params: Mapping[str, str], *, name: str | None = None) -> bytes:
        """The SOAP envelope that :meth:`execute_data_source` would send (for tests)."""
        message = self._zeep.create_message(
            self._service,
            "ExecuteDataSource",
            ExecuteDataSourceRequest=self.build_request(key, params, name=name),
        )
        return bytes(etree.tostring(message, encoding="utf-8", xml_declaration=False))

    def execute_data_source(
        self, key: int, params: Mapping[str, str], *, name: str | None = None
    ) -> DataSourceResult:
        """Run data source ``key`` with ``params`` (names with their ``@``).

        Raises:
            PlexTransientError: retry later (``.ambiguous`` when it may have run).
            PlexRejectedError: do not retry; ``.reason`` says why.
        """
        request = self.build_request(key, params, name=name)
        with self._call(key):
            with self._zeep.settings(raw_response=True):
                response = self._service.ExecuteDataSource(ExecuteDataSourceRequest=request)
            parsed = self._read(response, key)
        return parsed

    def _read(self, response: requests.Response, key: int) -> DataSourceResult:
        """The answer's result: read by name with lxml, else by zeep; then checked."""
        fields = self._read_fast(response)
        if fields is None:
            fields = self._read_with_zeep(response, key)
        _note_unknown(fields.unknown, key)
        return self._finish(fields, key)

    def _parse(self, response: requests.Response) -> Any | None:
        """The answer's parsed XML, or ``None`` when zeep must read (and raise) it."""
        media_type = response.headers.get("Content-Type", "text/xml").split(";", 1)[0]
        if (
            response.status_code != 200
            or media_type.strip().lower() not in _SOAP_MEDIA_TYPES
            or not response.content
            or self._zeep.wsse is not None
            or self._zeep.plugins
        ):
            return None
        try:
            # zeep's own parser and settings: DTDs, entities, external references and
            # huge trees are refused here exactly as zeep refuses them.
            loader: Any = zeep.loader  # annotated content: str, but bytes is what it parses
            return loader.parse_xml(
                response.content, self._zeep.transport, settings=self._zeep.settings
            )
        except (etree.XMLSyntaxError, zeep.exceptions.XMLSyntaxError):
            return None  # zeep raises its TransportError for it

    def _read_fast(self, response: requests.Response) -> ResultFields | None:
        """The result read by name with lxml, or ``None`` when the answer is not a result."""
        doc = self._parse(response)
        if doc is None:
            return None
        try:
            return read_result(doc, self.cfg.soap_version)
        except MalformedResultError as exc:
            raise PlexBadResponseError(f"unreadable Plex response: {exc}") from exc

    def _read_with_zeep(self, response: requests.Response, key: int) -> ResultFields:
        """zeep's own reply processing: faults and odd answers raise as they always did."""
        binding = self._service._binding
        result = binding.process_reply(self._zeep, binding.get("ExecuteDataSource"), response)
        if result is None:
            raise PlexBadResponseError(f"data source {key}: the response has no result")
        return fields_from_zeep(result)

    def request_template(self, key: int) -> list[str]:
        """The input names data source ``key`` takes (``GetDataSourceRequestTemplate``)."""
        with self._call(key):
            with self._zeep.settings(raw_response=True):
                response = self._service.GetDataSourceRequestTemplate(dataSourceKey=key)
            doc = self._parse(response)
            try:
                read = read_template(doc, self.cfg.soap_version) if doc is not None else None
            except MalformedResultError as exc:
                raise PlexBadResponseError(f"unreadable Plex response: {exc}") from exc
            if read is None:  # a Fault or another body: zeep raises it as it always did
                binding = self._service._binding
                operation = binding.get("GetDataSourceRequestTemplate")
                template = binding.process_reply(self._zeep, operation, response)
                if template is None or template.InputParameters is None:
                    return []
                return [_text(p.Name) for p in template.InputParameters.InputParameter or []]
        names, unknown = read
        _note_unknown(unknown, key)
        return names

    def _finish(self, fields: ResultFields, key: int) -> DataSourceResult:
        """The typed result, or the classified error when Plex says ``Error`` true."""
        parsed = DataSourceResult(
            data_source_key=int(fields.data_source_key or key),
            data_source_name=_text(fields.data_source_name),
            result_sets=fields.result_sets,
            output_parameters=fields.output_parameters,
            instance_no=_text(fields.instance_no),
            message=_text(fields.message),
            status_no=int(fields.status_no or 0),
        )
        if fields.error:
            error_no = int(fields.error_no or 0)
            message = (
                f"data source {key} failed: ErrorNo {error_no}, StatusNo {parsed.status_no}, "
                f"{parsed.message!r} (InstanceNo {parsed.instance_no or '-'})"
            )
            if error_no in self.cfg.transient_error_numbers:
                exc: PlexError = PlexTransientDataSourceError(
                    message, error_no=error_no, instance_no=parsed.instance_no
                )
            else:
                exc = PlexDataSourceError(
                    message,
                    error_no=error_no,
                    status_no=parsed.status_no,
                    instance_no=parsed.instance_no,
                    data_source_key=key,
                )
            raise exc
        return parsed

    def _count(self, key: int, exc: PlexError | None) -> None:
        if self.metrics is None:
            return
        if exc is None:
            self.metrics.requests.labels(str(key), "ok", "ok").inc()
        else:
            outcome = "transient" if isinstance(exc, TransientError) else "rejected"
            self.metrics.requests.labels(str(key), outcome, exc.reason).inc()

    @contextmanager
    def _call(self, key: int) -> Iterator[None]:
        """Rate limit, time, classify and count one SOAP call."""
        if self.limiter is not None:
            self.limiter.acquire()
        started = time.monotonic()
        try:
            try:
                yield
            finally:
                if self.metrics is not None:
                    self.metrics.request_seconds.labels(str(key)).observe(
                        time.monotonic() - started
                    )
        except PlexError as exc:
            if isinstance(exc, PlexRateLimitedError) and self.limiter is not None:
                self.limiter.back_off(exc.retry_after_s)
            self._count(key, exc)
            log.warning("plex_call_failed", data_source=key, reason=exc.reason, error=str(exc))
            raise
        except Exception as exc:
            mapped = _classify(exc, key)
            self._count(key, mapped)
            log.warning(
                "plex_call_failed", data_source=key, reason=mapped.reason, error=str(mapped)
            )
            raise mapped from exc
        self._count(key, None)


def _classify(exc: Exception, key: int) -> PlexError:  # noqa: PLR0911 - a flat table of cases
    """A library exception as a classified PlexError."""
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
