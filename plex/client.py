"""The Plex SOAP client: one hardened zeep client per process, typed results.

The parts, each in a module of its own:

* :mod:`plex.transport`: the environment guard (a test configuration never talks to
  production), the HTTP session (connect retries only, no redirects, a total deadline,
  statuses classified) and zeep's hardened settings and on-disk WSDL.
* :mod:`plex.calls`: the frame of every call: rate limit, timing, classification of what
  the libraries raise, counting.
* :mod:`plex.response` and :mod:`plex.result`: the answer read by element name and turned
  into a :class:`DataSourceResult` or the data-source error Plex reports in its body.

This module runs the operations. Answers are read by element name with lxml, not by
zeep's strict xsd objects: Plex adds fields to its results over the years, and a real
answer carries fields a fixed shape does not know; zeep also costs seconds on big data
sources. What is not a result (a Fault, HTTP errors, bad XML) still goes through zeep's
reply processing, so it is raised and classified as zeep raises it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import requests
import zeep.exceptions
import zeep.loader
from lxml import etree

from core.config.plex import PlexConfig
from plex.calls import Limiter, metered
from plex.errors import PlexBadResponseError
from plex.metrics import PlexMetrics
from plex.response import (
    NAMESPACE,
    MalformedResultError,
    ResultFields,
    fields_from_zeep,
    read_result,
    read_template,
)
from plex.result import DataSourceResult, note_unknown, text, to_result
from plex.transport import WSDL_PATH, check_environment, open_session, soap_client

#: ``WSDL_PATH`` stays importable from here: the benchmarks read the WSDL through it.
__all__ = ["WSDL_PATH", "PlexClient"]

_SOAP_MEDIA_TYPES = ("text/xml", "application/soap+xml")


class PlexClient:
    """Calls Plex data sources over SOAP. Not shared between threads: one per worker."""

    def __init__(
        self,
        cfg: PlexConfig,
        *,
        metrics: PlexMetrics | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        check_environment(cfg)  # before anything is built for the wrong endpoint
        self.cfg = cfg
        self.metrics = metrics
        self.limiter = limiter
        self.session = open_session(cfg)
        self._zeep: Any
        self._zeep, self._service = soap_client(cfg, self.session)
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
                return [text(p.Name) for p in template.InputParameters.InputParameter or []]
        names, unknown = read
        note_unknown(unknown, key)
        return names

    # --- the answer -------------------------------------------------------------------

    def _read(self, response: requests.Response, key: int) -> DataSourceResult:
        """The answer's result: read by name with lxml, else by zeep; then checked."""
        fields = self._read_fast(response)
        if fields is None:
            fields = self._read_with_zeep(response, key)
        note_unknown(fields.unknown, key)
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

    def _finish(self, fields: ResultFields, key: int) -> DataSourceResult:
        """The typed result, or the classified error when Plex says ``Error`` true."""
        return to_result(fields, key, self.cfg.transient_error_numbers)

    def _call(self, key: int) -> AbstractContextManager[None]:
        """Rate limit, time, classify and count one SOAP call (:func:`plex.calls.metered`)."""
        return metered(key, self.limiter, self.metrics)
