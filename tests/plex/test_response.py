"""ExecuteDataSource's answer read with lxml gives exactly what zeep's reading gave.

Every case compares the client's public path (:meth:`PlexClient.execute_data_source`)
with zeep's reply processing of the very same HTTP response, and says which path the
client took: a plain result must be read by the fast reader (``_read_fast`` not None),
anything else must be left to zeep, so errors keep their classes and reasons.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from core.config.plex import PlexConfig
from core.config.sim_plex import SimPlexConfig
from core.metrics import new_registry
from plex.client import DataSourceResult, PlexClient
from plex.errors import (
    PlexBadResponseError,
    PlexDataSourceError,
    PlexError,
    PlexFaultError,
    PlexTransientDataSourceError,
    PlexUnavailableError,
    PlexUnsafeResponseError,
)
from plex.metrics import PlexMetrics
from sim.accounting.ledger import ACTIVITY_COLUMNS
from sim.plex import soap
from sim.plex.server import PlexSimServer
from tests.plex.conftest import SIM_PASSWORD, SIM_USER

ENV = {"1.1": soap.SOAP11, "1.2": soap.SOAP12}
NS = "http://www.plexus-online.com/DataSource"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

Outcome = DataSourceResult | tuple[type[PlexError], str, str, bool]


def make_client(url: str, version: str = "1.1", **overrides: Any) -> PlexClient:
    data: dict[str, Any] = {
        "endpoint": url,
        "environment": "simulator",
        "username": SIM_USER,
        "password": SecretStr(SIM_PASSWORD),
        "operation_timeout_s": 2.0,
        "connect_timeout_s": 1.0,
        "soap_version": version,
    }
    data.update(overrides)
    return PlexClient(PlexConfig.model_validate(data), metrics=PlexMetrics(new_registry()))


def _outcome(call: Callable[[], DataSourceResult]) -> Outcome:
    try:
        return call()
    except PlexError as exc:
        return (type(exc), exc.reason, str(exc), exc.ambiguous)


def raw_response(client: PlexClient, key: int, params: Mapping[str, str]) -> requests.Response:
    """The HTTP response to one call, as zeep's transport received it (unparsed)."""
    request = client.build_request(key, params)
    with client._call(key), client._zeep.settings(raw_response=True):
        response: requests.Response = client._service.ExecuteDataSource(
            ExecuteDataSourceRequest=request
        )
    return response


def zeep_outcome(client: PlexClient, response: requests.Response, key: int) -> Outcome:
    """What the client made of the response when zeep read every answer (the old path)."""

    def call() -> DataSourceResult:
        with client._call(key):
            return client._finish(client._read_with_zeep(response, key), key)

    return _outcome(call)


def client_outcome(client: PlexClient, response: requests.Response, key: int) -> Outcome:
    """What :meth:`PlexClient.execute_data_source` makes of the response (its own steps)."""

    def call() -> DataSourceResult:
        with client._call(key):
            return client._read(response, key)

    return _outcome(call)


def compare(
    client: PlexClient, key: int, params: Mapping[str, str], *, fast: bool
) -> tuple[Outcome, Outcome]:
    """(the client's outcome, zeep's outcome for the same answer); checks the path taken."""
    response = raw_response(client, key, params)
    assert (client._read_fast(response) is not None) is fast
    return client_outcome(client, response, key), zeep_outcome(client, response, key)


# -- against the simulated Plex ------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_simulator_answers_read_the_same_on_both_paths(sim: PlexSimServer, version: str) -> None:
    client = make_client(sim.url, version)
    calls: list[tuple[int, dict[str, str]]] = [
        (4814, {"@PCNs": "123681", "@Period_Start": "202405", "@Period_End": "202405"}),
        (910012, {}),  # workcenters
        (910010, {"@External_Ref": "RS-nothing"}),  # an empty result set
    ]
    for key, params in calls:
        public, old = compare(client, key, params, fast=True)
        assert isinstance(public, DataSourceResult)
        assert public == old
    filed = client.execute_data_source(
        910001,
        {"@Workcenter_Key": "61101", "@Description": "d", "@External_Ref": "RS-r", "@Title": ""},
    )
    ticket = filed.rows[0]["Work_Request_Key"]
    public, old = compare(client, 910011, {"@Work_Request_Key": ticket}, fast=True)
    assert public == old
    assert isinstance(public, DataSourceResult)
    assert public.rows[0]["Closed_Date"] == ""  # <Value/> on both paths


@pytest.mark.parametrize(
    ("transient", "error"),
    [([], PlexDataSourceError), ([50000], PlexTransientDataSourceError)],
)
def test_error_true_answers_raise_the_same_on_both_paths(
    sim: PlexSimServer, transient: list[int], error: type[PlexError]
) -> None:
    client = make_client(sim.url, transient_error_numbers=transient)
    sim.faults.configure({"queue": ["error_body"]})
    public, old = compare(client, 910012, {}, fast=True)
    assert public == old
    assert isinstance(public, tuple)
    assert public[0] is error
    assert "ErrorNo 50000, StatusNo 1" in public[2]


def test_unknown_data_source_is_rejected_the_same_on_both_paths(sim: PlexSimServer) -> None:
    client = make_client(sim.url)
    public, old = compare(client, 123456, {}, fast=True)
    assert public == old
    assert public == (
        PlexDataSourceError,
        "data_source_error",
        "data source 123456 failed: ErrorNo 50004, StatusNo 1, 'Data source 123456 does not "
        "exist or is not granted to this account.' (InstanceNo 880001)",
        False,
    )


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        ("malformed_xml", PlexBadResponseError, "malformed_response"),
        ("xxe", PlexUnsafeResponseError, "unsafe_xml"),
    ],
)
def test_broken_simulator_answers_go_to_zeep(
    sim: PlexSimServer, fault: str, error: type[PlexError], reason: str
) -> None:
    client = make_client(sim.url)
    sim.faults.configure({"queue": [fault]})
    if fault == "xxe":  # refused by the same parser settings before any reading
        response = raw_response(client, 910012, {})
        with pytest.raises(Exception, match="DTD"):
            client._read_fast(response)
        public = client_outcome(client, response, 910012)
        assert public == zeep_outcome(client, response, 910012)
    else:
        public, old = compare(client, 910012, {}, fast=False)
        assert public == old
    assert isinstance(public, tuple)
    assert public[:2] == (error, reason)


# -- canned answers from a loopback HTTP server --------------------------------------


@dataclass
class Canned:
    status: int = 200
    ctype: str = "text/xml; charset=utf-8"
    body: bytes = b""
    url: str = ""


class _CannedHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        canned: Canned = self.server.canned  # type: ignore[attr-defined]
        self.send_response(canned.status)
        self.send_header("Content-Type", canned.ctype)
        self.send_header("Content-Length", str(len(canned.body)))
        self.end_headers()
        self.wfile.write(canned.body)


@pytest.fixture
def canned() -> Iterator[Canned]:
    """A loopback HTTP server answering every POST with ``canned``'s status and body."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedHandler)
    state = Canned(url=f"http://127.0.0.1:{server.server_address[1]}/DataSource/Service.asmx")
    server.canned = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def envelope(version: str, result: str, *, header: str = "") -> bytes:
    """An ExecuteDataSource answer with ``result`` as the ExecuteDataSourceResult's inside."""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{ENV[version]}" xmlns:xsi="{XSI}">{header}<soap:Body>'
        f'<ExecuteDataSourceResponse xmlns="{NS}"><ExecuteDataSourceResult>{result}'
        f"</ExecuteDataSourceResult></ExecuteDataSourceResponse></soap:Body></soap:Envelope>"
    ).encode()


HEAD = (
    "<StatusNo>0</StatusNo><Error>false</Error><ErrorNo>0</ErrorNo><Message>Success</Message>"
    "<InstanceNo>77</InstanceNo><DataSourceKey>4814</DataSourceKey>"
    "<DataSourceName>Account_Activity_Summary_xPCN_Get</DataSourceName>"
)
ODD_VALUES = (
    "<ResultSets><ResultSet><RowCount>5</RowCount><Rows>"
    '<Row><Columns><Column><Value xsi:nil="true"/><Name>Nil</Name></Column>'
    "<Column><Name>Missing_Value</Name></Column>"
    "<Column><Value>no name</Value></Column>"
    "<Column><Value>  spaced\t </Value><Name>Spaced</Name></Column>"
    "<Column><Value>&lt;a&gt; &amp; &quot;b&quot; &#233;&#x1F600;</Value><Name>Esc</Name></Column>"
    "<Column><Value><![CDATA[<raw> & ]]>tail</Value><Name>Cdata</Name></Column>"
    "<Column><Value>first</Value><Name>Dup</Name></Column>"
    "<Column><Value>second</Value><Name>Dup</Name></Column>"
    "</Columns></Row>"
    "<Row><Columns/></Row>"
    "<Row><Columns><Column><Value>x<!-- a comment --></Value><Name>C</Name></Column>"
    "</Columns></Row>"
    "</Rows></ResultSet>"
    "<ResultSet><RowCount>0</RowCount></ResultSet>"
    "<ResultSet><RowCount>0</RowCount><Rows/></ResultSet>"
    "</ResultSets>"
)

#: (case, ExecuteDataSourceResult inside, read by the fast reader?)
SHAPES = [
    ("odd values, several result sets", HEAD + ODD_VALUES, True),
    (
        "output parameters",
        HEAD + "<ResultSets/><OutputParameters><OutputParameter><Value>12</Value>"
        "<Name>@Count</Name></OutputParameter><OutputParameter><Name>@Empty</Name>"
        "</OutputParameter></OutputParameters>",
        True,
    ),
    (
        "no message, instance, name; key 0 means the key asked",
        "<StatusNo>0</StatusNo><Error>0</Error><ErrorNo>0</ErrorNo>"
        "<DataSourceKey>0</DataSourceKey>",
        True,
    ),
    (
        "Error 1 is true, transient number",
        "<StatusNo>3</StatusNo><Error>1</Error><ErrorNo>50001</ErrorNo><Message>busy</Message>"
        "<DataSourceKey>4814</DataSourceKey>",
        True,
    ),
    (
        "Error TRUE is not true to zeep",
        "<StatusNo>0</StatusNo><Error>TRUE</Error><ErrorNo>7</ErrorNo>"
        "<DataSourceKey>4814</DataSourceKey>",
        True,
    ),
    (
        "empty numbers",
        "<StatusNo/><Error/><ErrorNo/><DataSourceKey/>",
        True,
    ),
    ("a number that is not one", HEAD.replace(">0</StatusNo>", ">zero</StatusNo>"), False),
    ("a required element missing", HEAD.replace("<ErrorNo>0</ErrorNo>", ""), False),
    (
        "elements out of the WSDL's order",
        HEAD.replace("<Error>false</Error><ErrorNo>0</ErrorNo>", "<ErrorNo>0</ErrorNo>"),
        False,
    ),
    (
        "an element the WSDL does not have",
        HEAD + "<ResultSets><ResultSet><RowCount>1</RowCount><Rows><Row><Columns><Column>"
        "<Value>v</Value><Name>n</Name><Extra>e</Extra></Column></Columns></Row></Rows>"
        "</ResultSet></ResultSets>",
        False,
    ),
    (
        "a nil row",
        HEAD + '<ResultSets><ResultSet><RowCount>1</RowCount><Rows><Row xsi:nil="true"/>'
        "</Rows></ResultSet></ResultSets>",
        False,
    ),
    (
        "a nil value with text",
        HEAD.replace("<Message>", '<Message xsi:nil="true">'),
        False,
    ),
    (
        "an empty row (None to zeep)",
        HEAD + "<ResultSets><ResultSet><RowCount>1</RowCount><Rows><Row/>"
        "</Rows></ResultSet></ResultSets>",
        False,
    ),
    (
        "an empty column (None to zeep)",
        HEAD + "<ResultSets><ResultSet><RowCount>1</RowCount><Rows><Row><Columns><Column/>"
        "</Columns></Row></Rows></ResultSet></ResultSets>",
        False,
    ),
    ("an unknown attribute", HEAD.replace("<Message>", '<Message lang="en">'), False),
]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize(("case", "inside", "fast"), SHAPES, ids=[s[0] for s in SHAPES])
def test_canned_shapes_read_the_same_on_both_paths(
    canned: Canned, version: str, case: str, inside: str, fast: bool
) -> None:
    canned.ctype = soap.content_type(version)
    canned.body = envelope(version, inside)
    client = make_client(canned.url, version, transient_error_numbers=[50001])
    public, old = compare(client, 4814, {}, fast=fast)
    assert public == old, case


def test_odd_values_are_read_as_zeep_reads_them(canned: Canned) -> None:
    canned.body = envelope("1.1", HEAD + ODD_VALUES)
    result = make_client(canned.url).execute_data_source(4814, {})
    assert result.result_sets == [
        [
            {
                "Nil": "",
                "Missing_Value": "",
                "": "no name",
                "Spaced": "  spaced\t ",
                "Esc": '<a> & "b" \u00e9\U0001f600',
                "Cdata": "<raw> & tail",
                "Dup": "second",
            },
            {},
            {"C": "x"},
        ],
        [],
        [],
    ]


def test_a_soap_header_is_ignored_as_zeep_ignores_it(canned: Canned) -> None:
    canned.body = envelope("1.1", HEAD, header="<soap:Header><Trace>1</Trace></soap:Header>")
    public, old = compare(make_client(canned.url), 4814, {}, fast=True)
    assert public == old


@pytest.mark.parametrize(
    ("status", "ctype", "body", "expected"),
    [
        (
            500,
            "text/xml; charset=utf-8",
            soap.fault_xml("1.1", "Server was unable to process request.", client=False),
            (
                PlexUnavailableError,
                "soap_fault_server",
                "Plex SOAP fault: Server was unable to process request.",
                True,
            ),
        ),
        (
            200,
            "text/xml; charset=utf-8",
            soap.fault_xml("1.1", "DataSourceKey is not a number"),
            (
                PlexFaultError,
                "soap_fault_client",
                "Plex refused the request: DataSourceKey is not a number",
                False,
            ),
        ),
        (
            200,
            "text/html",
            b"<html><body>Maintenance</body></html>",
            (
                PlexBadResponseError,
                "malformed_response",
                "unreadable Plex response: The XML returned by the server does not contain a "
                "valid {http://schemas.xmlsoap.org/soap/envelope/}Envelope root element. The "
                "root element found is html ",
                True,
            ),
        ),
        (
            200,
            "text/xml",
            b"Service Unavailable",
            (
                PlexBadResponseError,
                "malformed_response",
                "unreadable Plex response: Server returned response (200) with invalid XML: "
                "Invalid XML content received (Start tag expected, '<' not found, line 1, "
                "column 1).",
                True,
            ),
        ),
        (
            200,
            "text/xml",
            soap.XXE_BODY,
            (
                PlexUnsafeResponseError,
                "unsafe_xml",
                "refused an unsafe Plex response: DTDForbidden(name='<!DOCTYPE Envelope>', "
                "system_id=None, public_id=None)",
                False,
            ),
        ),
        (
            200,
            "text/xml",
            envelope("1.1", "").replace(
                b"<ExecuteDataSourceResult></ExecuteDataSourceResult>", b""
            ),
            (
                PlexBadResponseError,
                "malformed_response",
                "data source 4814: the response has no result",
                True,
            ),
        ),
    ],
    ids=["fault-500", "fault-200", "html", "not-xml", "xxe", "no-result"],
)
def test_faults_and_bad_bodies_raise_as_before(
    canned: Canned, status: int, ctype: str, body: bytes, expected: Outcome
) -> None:
    canned.status, canned.ctype, canned.body = status, ctype, body
    client = make_client(canned.url)
    response = raw_response(client, 4814, {})
    if body is not soap.XXE_BODY:
        assert client._read_fast(response) is None
    public = client_outcome(client, response, 4814)
    assert public == zeep_outcome(client, response, 4814)
    assert public == expected
    assert _outcome(lambda: client.execute_data_source(4814, {})) == expected


def test_non_xml_500_is_refused_before_any_reading(canned: Canned) -> None:
    canned.status, canned.ctype, canned.body = 500, "text/plain", b"boom"
    public = _outcome(lambda: make_client(canned.url).execute_data_source(4814, {}))
    assert public == (PlexUnavailableError, "http_5xx", "Plex answered HTTP 500", True)


# -- random values through the simulator ---------------------------------------------

#: XML 1.0 text: no surrogates and no control characters but tab and newline (a bare CR
#: is normalized to LF by every XML parser, and Plex's data has none).
_xml_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n<>&'\" ]]>"),
    max_size=12,
)


def test_random_values_round_trip_through_the_simulator() -> None:
    """Random 4814 rows served by the simulator come back equal, on both paths alike."""
    served: list[list[dict[str, str]]] = [[]]
    cfg = SimPlexConfig.model_validate({"username": SIM_USER}).model_copy(
        update={"password": SecretStr(SIM_PASSWORD)}
    )
    params = {"@PCNs": "123681", "@Period_Start": "202405", "@Period_End": "202405"}
    with PlexSimServer(cfg, ledger=lambda pcns, start, end: served[0]) as sim:
        client = make_client(sim.url)

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(st.lists(_xml_text, min_size=7, max_size=7), max_size=6))
        def check(values: list[list[str]]) -> None:
            served[0] = [dict(zip(ACTIVITY_COLUMNS, row, strict=True)) for row in values]
            public, old = compare(client, 4814, params, fast=True)
            assert isinstance(public, DataSourceResult)
            assert public.rows == served[0]
            assert public == old

        check()
        client.close()
