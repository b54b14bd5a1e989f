"""The SOAP client against the simulated Plex: envelope, typed rows, every failure classified."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lxml import etree
from pydantic import SecretStr

from core.config.plex import PlexConfig
from core.errors import ConfigError, RejectedError, TransientError
from core.metrics import new_registry, sample
from plex.client import PlexClient
from plex.errors import (
    PlexAuthError,
    PlexBadResponseError,
    PlexDataSourceError,
    PlexError,
    PlexFaultError,
    PlexRateLimitedError,
    PlexTimeoutError,
    PlexUnavailableError,
    PlexUnsafeResponseError,
)
from plex.metrics import PlexMetrics
from plex.transport import retry_after_seconds
from sim.accounting.ledger import Ledger
from sim.plex.server import PlexSimServer
from tests.plex.conftest import SIM_PASSWORD, SIM_USER

GOLDEN = Path(__file__).parent / "golden"


def client_for(sim: PlexSimServer, **overrides: object) -> PlexClient:
    data: dict[str, object] = {
        "endpoint": sim.url,
        "username": SIM_USER,
        "password": SecretStr(SIM_PASSWORD),
        "operation_timeout_s": 1.0,
        "connect_timeout_s": 1.0,
    }
    data.update(overrides)
    return PlexClient(PlexConfig.model_validate(data), metrics=PlexMetrics(new_registry()))


def c14n(xml: bytes) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True)
    return etree.tostring(etree.fromstring(xml, parser), method="c14n")


def test_request_envelope_matches_the_documented_shape(sim: PlexSimServer) -> None:
    client = client_for(sim)
    envelope = client.envelope(
        4814,
        {"@PCNs": "123681,300758", "@Period_Start": "202401", "@Period_End": "202403"},
        name="Account_Activity_Summary_xPCN_Get",
    )
    golden = (GOLDEN / "execute_data_source_request.xml").read_bytes()
    assert c14n(envelope) == c14n(golden)


def test_4814_rows_are_typed_and_positional(sim: PlexSimServer) -> None:
    client = client_for(sim)
    result = client.execute_data_source(
        4814,
        {"@PCNs": "123681", "@Period_Start": "202405", "@Period_End": "202405"},
        name="Account_Activity_Summary_xPCN_Get",
    )
    expected = Ledger.seeded(1).account_activity_summary([123681], 202405, 202405)
    assert result.rows == expected
    assert result.message == "Success"
    assert result.instance_no.isdigit()
    assert result.data_source_key == 4814
    first = result.rows[0]
    assert list(first) == [
        "Account_No",
        "Account_Name",
        "Account_Type",
        "Beginning_Balance",
        "Debit",
        "Credit",
        "Ending_Balance",
    ]
    # Position 1 account_no, 4 beginning, 5 debit, 6 credit, 7 ending (DOMAIN.md 5).
    values = list(first.values())
    assert values[0] == expected[0]["Account_No"]
    assert values[6] == expected[0]["Ending_Balance"]


def test_soap12_binding_gives_the_same_rows(sim: PlexSimServer) -> None:
    rows11 = client_for(sim).execute_data_source(910012, {}).rows
    rows12 = client_for(sim, soap_version="1.2").execute_data_source(910012, {}).rows
    assert rows11 == rows12
    assert {r["Workcenter_Code"] for r in rows11} >= {"cnc101", "cnc103"}


def test_empty_result_and_empty_values(sim: PlexSimServer) -> None:
    client = client_for(sim)
    result = client.execute_data_source(910010, {"@External_Ref": "RS-nothing"})
    assert result.rows == []
    assert result.result_sets == [[]]
    filed = client.execute_data_source(
        910001,
        {"@Workcenter_Key": "61101", "@Description": "d", "@External_Ref": "RS-e", "@Title": ""},
    )
    key = filed.rows[0]["Work_Request_Key"]
    status = client.execute_data_source(910011, {"@Work_Request_Key": key}).rows[0]
    assert status["Closed_Date"] == ""  # sent as <Value/>, read as ""


def test_request_template_lists_the_inputs(sim: PlexSimServer) -> None:
    assert client_for(sim).request_template(4814) == ["@PCNs", "@Period_Start", "@Period_End"]


@pytest.mark.parametrize(
    ("fault", "error", "reason", "ambiguous"),
    [
        ("http_500", PlexUnavailableError, "http_5xx", True),
        ("http_401", PlexAuthError, "auth", False),
        ("http_429", PlexRateLimitedError, "rate_limited", False),
        ("error_body", PlexDataSourceError, "data_source_error", False),
        ("malformed_xml", PlexBadResponseError, "malformed_response", True),
        ("xxe", PlexUnsafeResponseError, "unsafe_xml", False),
        ("timeout_after_commit", PlexTimeoutError, "timeout", True),
    ],
)
def test_every_fault_is_classified(
    make_sim, fault: str, error: type[PlexError], reason: str, ambiguous: bool
) -> None:
    sim = make_sim(faults={"hang_s": 3.0})
    client = client_for(sim)
    sim.faults.configure({"queue": [fault]})
    with pytest.raises(error) as caught:
        client.execute_data_source(910012, {})
    assert caught.value.reason == reason
    assert caught.value.ambiguous is ambiguous
    transient = fault not in ("error_body", "xxe")
    assert isinstance(caught.value, TransientError if transient else RejectedError)
    # The next call, without a fault, works: the client is not left broken.
    assert client.execute_data_source(910012, {}).rows


def test_data_source_error_carries_plex_numbers(sim: PlexSimServer) -> None:
    client = client_for(sim)
    with pytest.raises(PlexDataSourceError) as caught:
        client.execute_data_source(
            910001, {"@Workcenter_Key": "99", "@Description": "d", "@External_Ref": "RS-x"}
        )
    exc = caught.value
    assert exc.error_no == 50003
    assert exc.instance_no.isdigit()
    assert str(exc) == (
        f"data source 910001 failed: ErrorNo 50003, StatusNo 1, "
        f"'Workcenter_Key 99 does not exist' (InstanceNo {exc.instance_no})"
    )


def test_configured_transient_error_number_is_retryable(sim: PlexSimServer) -> None:
    client = client_for(sim, transient_error_numbers=[50000])
    sim.faults.configure({"queue": ["error_body"]})
    with pytest.raises(TransientError) as caught:
        client.execute_data_source(910012, {})
    assert caught.value.reason == "data_source_transient"


def test_unsafe_response_is_refused_with_a_clear_error(sim: PlexSimServer) -> None:
    client = client_for(sim)
    sim.faults.configure({"queue": ["xxe"]})
    with pytest.raises(PlexUnsafeResponseError, match=r"refused an unsafe Plex response: DTD"):
        client.execute_data_source(910012, {})


def test_wrong_password_is_an_auth_error(sim: PlexSimServer) -> None:
    client = client_for(sim, password=SecretStr("wrong"))
    with pytest.raises(PlexAuthError, match=r"Plex refused the credentials \(HTTP 401\)"):
        client.execute_data_source(910012, {})
    assert sim.requests()[-1].status == 401


def test_soap_fault_for_a_request_plex_cannot_read(sim: PlexSimServer) -> None:
    client = client_for(sim)
    # The key is a string in Plex's schema; the public API only sends ints, so the raw
    # service is called inside the client's classifying wrapper.
    with (
        pytest.raises(PlexFaultError, match="DataSourceKey 'abc' is not a number"),
        client._call(0),
    ):
        client._service.ExecuteDataSource(ExecuteDataSourceRequest={"DataSourceKey": "abc"})


def test_connection_refused_is_transient_and_not_ambiguous() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = PlexConfig(endpoint=f"http://127.0.0.1:{port}/DataSource/Service.asmx", connect_retries=0)
    with pytest.raises(PlexUnavailableError) as caught:
        PlexClient(cfg).execute_data_source(1, {})
    assert caught.value.reason == "connect_error"
    assert caught.value.ambiguous is False


def test_connection_dropped_after_sending_is_ambiguous() -> None:
    """A server that reads the request and hangs up: maybe committed, never resent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    seen: list[int] = []

    def serve() -> None:
        # One connection only: a resend would then be refused and fail differently.
        conn, _ = listener.accept()
        conn.recv(65536)
        seen.append(1)
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    cfg = PlexConfig(endpoint=f"http://127.0.0.1:{port}/DataSource/Service.asmx")
    with pytest.raises(PlexUnavailableError) as caught:
        PlexClient(cfg).execute_data_source(1, {})
    thread.join(5)
    assert caught.value.reason == "connection_lost"
    assert caught.value.ambiguous is True
    assert seen == [1]  # the transport did not resend it


def test_client_refuses_an_environment_mismatch() -> None:
    cfg = PlexConfig.model_construct(
        environment="test", endpoint="https://api.plexonline.com/DataSource/Service.asmx"
    )
    with pytest.raises(ConfigError) as caught:
        PlexClient(cfg)
    assert str(caught.value) == (
        "plex.endpoint: environment 'test' but host 'api.plexonline.com' is not a Plex test host"
    )


def test_metrics_count_outcomes(sim: PlexSimServer) -> None:
    registry = new_registry()
    cfg = PlexConfig(endpoint=sim.url, username=SIM_USER, password=SecretStr(SIM_PASSWORD))
    client = PlexClient(cfg, metrics=PlexMetrics(registry))
    client.execute_data_source(910012, {})
    sim.faults.configure({"queue": ["http_500"]})
    with pytest.raises(PlexUnavailableError):
        client.execute_data_source(910012, {})
    labels = {"data_source": "910012"}
    assert (
        sample(registry, "repsys_plex_requests_total", {**labels, "outcome": "ok", "reason": "ok"})
        == 1
    )
    assert (
        sample(
            registry,
            "repsys_plex_requests_total",
            {**labels, "outcome": "transient", "reason": "http_5xx"},
        )
        == 1
    )
    assert sample(registry, "repsys_plex_request_duration_seconds_count", labels) == 2


@pytest.mark.parametrize(
    ("header", "seconds"), [("3", 3.0), (None, 1.0), ("soon", 1.0), ("0", 0.0)]
)
def test_retry_after_parsing(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(header) == seconds


def test_retry_after_http_date() -> None:
    import email.utils
    import time

    value = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= retry_after_seconds(value) <= 30


class _Redirector(BaseHTTPRequestHandler):
    """Answers every POST with a 307 to ``server.target`` (keeps method and body)."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(307)
        self.send_header("Location", self.server.target)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_redirect_is_refused_and_never_followed(sim: PlexSimServer) -> None:
    """A 307 would re-post the SOAP body with Basic auth to its target: refused instead."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    server.target = sim.url  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/DataSource/Service.asmx"
        client = client_for(sim, endpoint=endpoint)
        before = len(sim.requests())
        with pytest.raises(PlexUnavailableError) as caught:
            client.execute_data_source(910012, {"@PCN": "123681"})
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.reason == "http_redirect"
    assert sim.url in str(caught.value)
    assert len(sim.requests()) == before  # the body and the credentials went nowhere


def test_a_dripping_answer_is_cut_at_the_total_deadline() -> None:
    """Every byte within the read timeout, the whole answer far past the call's deadline."""
    body = GOLDEN.joinpath("execute_data_source_9726.xml").read_bytes()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()
    sent = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            # 0.2 s between chunks (read timeout 1 s): the body takes far longer than 1 s.
            for i in range(0, len(body), len(body) // 20 + 1):
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(body[i : i + len(body) // 20 + 1])
                except OSError:
                    return  # the client gave up and its connection was closed
            sent.set()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    cfg = PlexConfig(
        endpoint=f"http://127.0.0.1:{port}/DataSource/Service.asmx",
        operation_timeout_s=1.0,
        connect_timeout_s=1.0,
    )
    try:
        with pytest.raises(PlexTimeoutError) as caught:
            PlexClient(cfg).execute_data_source(9726, {})
        assert not sent.is_set()  # given up while the answer was still coming
    finally:
        stop.set()
        thread.join(5)
    assert caught.value.ambiguous is True
    assert "1 s deadline" in str(caught.value.__cause__)
