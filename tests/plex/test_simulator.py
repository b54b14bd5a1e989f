"""The simulated Plex is strict: WSDL validation, SOAPAction, Basic auth; admin endpoint."""

from __future__ import annotations

import base64

import httpx
import pytest
import zeep
from lxml import etree

from core.config.sim_plex import SimPlexConfig
from sim.plex import soap
from sim.plex.server import PlexSimServer
from tests.plex.conftest import SIM_PASSWORD, SIM_USER, UNKNOWN_ELEMENTS

NS = "http://www.plexus-online.com/DataSource"
AUTH = "Basic " + base64.b64encode(f"{SIM_USER}:{SIM_PASSWORD}".encode()).decode()


def envelope(payload: str) -> bytes:
    return (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:d="{NS}"><soap:Body>{payload}</soap:Body></soap:Envelope>'
    ).encode()


def post(
    sim: PlexSimServer, body: bytes, action: str = "ExecuteDataSource", auth: str = AUTH
) -> httpx.Response:
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": f'"{NS}/{action}"',
        "Authorization": auth,
    }
    return httpx.post(sim.url, content=body, headers=headers, timeout=5)


GOOD = (
    "<d:ExecuteDataSource><d:ExecuteDataSourceRequest><d:DataSourceKey>910012</d:DataSourceKey>"
    "</d:ExecuteDataSourceRequest></d:ExecuteDataSource>"
)


def faultstring(response: httpx.Response) -> str:
    root = etree.fromstring(response.content)
    return str(root.findtext(".//faultstring"))


def test_a_valid_request_gets_a_schema_valid_answer(sim: PlexSimServer) -> None:
    response = post(sim, envelope(GOOD))
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    payload = root.find(f".//{{{NS}}}ExecuteDataSourceResponse")
    assert payload is not None
    # Run with REPSYS_TEST_PLEX_UNKNOWN_ELEMENTS=1 the simulator adds fields our WSDL lacks,
    # as a newer Plex would: they are there, and the rest is exactly the WSDL's shape.
    added = {f"{{{NS}}}{name}" for name in ("ApprovalRequired", "ResultSetName", "DataType")}
    extra = [element for element in payload.iter() if element.tag in added]
    assert bool(extra) == UNKNOWN_ELEMENTS
    for element in extra:
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)
    assert sim.schema.validate(etree.ElementTree(payload)), sim.schema.error_log
    assert root.findtext(f".//{{{NS}}}Message") == "Success"


@pytest.mark.parametrize(
    ("payload", "action", "message"),
    [
        (
            # Required and Output are mandatory in an InputParameter.
            "<d:ExecuteDataSource><d:ExecuteDataSourceRequest>"
            "<d:DataSourceKey>910012</d:DataSourceKey><d:InputParameters><d:InputParameter>"
            "<d:Value>1</d:Value><d:Name>@PCN</d:Name></d:InputParameter></d:InputParameters>"
            "</d:ExecuteDataSourceRequest></d:ExecuteDataSource>",
            "ExecuteDataSource",
            "request does not match the WSDL: Element '{http://www.plexus-online.com/DataSource}"
            "InputParameter': Missing child element(s). Expected is ( "
            "{http://www.plexus-online.com/DataSource}Required ).",
        ),
        (
            "<d:ExecuteDataSource><d:ExecuteDataSourceRequest>"
            "<d:DataSourceName>x</d:DataSourceName><d:DataSourceKey>1</d:DataSourceKey>"
            "</d:ExecuteDataSourceRequest></d:ExecuteDataSource>",
            "ExecuteDataSource",
            "request does not match the WSDL: Element '{http://www.plexus-online.com/DataSource}"
            "DataSourceKey': This element is not expected. Expected is ( "
            "{http://www.plexus-online.com/DataSource}DataBase ).",
        ),
        (
            GOOD,
            "ExecuteDataSourcePost",
            f"SOAPAction '\"{NS}/ExecuteDataSourcePost\"' does not match ExecuteDataSource",
        ),
        ("<d:Nope/>", "Nope", f"unknown operation {{{NS}}}Nope"),
    ],
)
def test_invalid_requests_get_a_client_fault(
    sim: PlexSimServer, payload: str, action: str, message: str
) -> None:
    response = post(sim, envelope(payload), action)
    assert response.status_code == 500
    assert faultstring(response) == message
    assert sim.tickets() == []


def test_a_request_with_a_dtd_is_refused(sim: PlexSimServer) -> None:
    body = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>' + envelope(GOOD)
    response = post(sim, body)
    assert response.status_code == 500
    assert faultstring(response) == "a DTD is not allowed in a request"


@pytest.mark.parametrize(
    "auth",
    [
        "",
        "Basic " + base64.b64encode(f"{SIM_USER}:wrong".encode()).decode(),
        "Basic " + base64.b64encode(b"someone@plex.com:" + SIM_PASSWORD.encode()).decode(),
        "Basic !!!",
    ],
)
def test_basic_auth_is_checked(sim: PlexSimServer, auth: str) -> None:
    response = post(sim, envelope(GOOD), auth=auth)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Plex"'


def test_wsdl_is_served_with_this_address(sim: PlexSimServer) -> None:
    response = httpx.get(sim.url + "?WSDL", timeout=5)
    assert response.status_code == 200
    assert sim.url.encode() in response.content
    client = zeep.Client(sim.url + "?WSDL")
    assert {
        "ExecuteDataSource",
        "ExecuteDataSourcePost",
        "ExecuteDataSourceByDataSourceKey",
        "GetDataSourceRequestTemplate",
    } <= set(client.service._operations)


def test_post_and_by_key_operations(sim: PlexSimServer) -> None:
    post_body = envelope(
        "<d:ExecuteDataSourcePost><d:dataSourceKey>4814</d:dataSourceKey>"
        "<d:parameterNames>@PCNs|@Period_Start|@Period_End</d:parameterNames>"
        "<d:parameterValues>123681|202401|202401</d:parameterValues>"
        "<d:delimeter>|</d:delimeter></d:ExecuteDataSourcePost>"
    )
    response = post(sim, post_body, "ExecuteDataSourcePost")
    root = etree.fromstring(response.content)
    assert root.findtext(f".//{{{NS}}}Error") == "false"
    assert int(root.findtext(f".//{{{NS}}}RowCount") or 0) > 0
    by_key = envelope(
        "<d:ExecuteDataSourceByDataSourceKey><d:dataSourceKey>37686</d:dataSourceKey>"
        "</d:ExecuteDataSourceByDataSourceKey>"
    )
    response = post(sim, by_key, "ExecuteDataSourceByDataSourceKey")
    root = etree.fromstring(response.content)
    assert root.findtext(f".//{{{NS}}}DataSourceName") == "Workcenter_Status_Get"


def test_admin_endpoint_faults_tickets_reset(sim: PlexSimServer) -> None:
    admin = sim.admin_url
    bad = httpx.post(f"{admin}/faults", json={"http_500": 2}, timeout=5)
    assert bad.status_code == 400
    assert "http_500" in bad.json()["error"]
    bad = httpx.post(f"{admin}/faults", json={"queue": ["fire"]}, timeout=5)
    assert bad.status_code == 400
    ok = httpx.post(f"{admin}/faults", json={"queue": ["http_500"]}, timeout=5)
    assert ok.json()["queue"] == ["http_500"]
    assert post(sim, envelope(GOOD)).status_code == 500
    assert httpx.get(f"{admin}/faults", timeout=5).json()["counts"] == {"http_500": 1}

    create = envelope(
        "<d:ExecuteDataSource><d:ExecuteDataSourceRequest><d:DataSourceKey>910001"
        "</d:DataSourceKey><d:InputParameters>"
        + "".join(
            f"<d:InputParameter><d:Value>{v}</d:Value><d:Name>{n}</d:Name>"
            "<d:Required>false</d:Required><d:Output>false</d:Output></d:InputParameter>"
            for n, v in (
                ("@Workcenter_Key", "61324"),
                ("@Description", "worn"),
                ("@External_Ref", "RS-admin"),
            )
        )
        + "</d:InputParameters></d:ExecuteDataSourceRequest></d:ExecuteDataSource>"
    )
    assert post(sim, create).status_code == 200
    tickets = httpx.get(f"{admin}/tickets", timeout=5).json()
    assert [(t["external_ref"], t["workcenter_key"], t["status"]) for t in tickets] == [
        ("RS-admin", 61324, "Open")
    ]
    closed = httpx.post(
        f"{admin}/tickets/{tickets[0]['key']}/status", json={"status": "Closed"}, timeout=5
    )
    assert closed.json()["status"] == "Closed"
    assert httpx.post(f"{admin}/tickets/1/status", json={}, timeout=5).status_code == 404
    assert len(httpx.get(f"{admin}/requests", timeout=5).json()) == 2
    httpx.post(f"{admin}/reset", timeout=5)
    assert sim.tickets() == []
    assert sim.requests() == []


def test_config_rejects_fault_sums_above_one() -> None:
    with pytest.raises(ValueError, match=r"fault probabilities sum to 1\.20, more than 1"):
        SimPlexConfig.model_validate({"faults": {"http_500": 0.6, "xxe": 0.6}})


def test_responses_of_every_fault_free_role_validate(sim: PlexSimServer) -> None:
    """The simulator's own answers fit the WSDL (so the client is tested on Plex's shape)."""
    for key, inputs in [
        (9726, {"@Start_Date": "04/01/2024", "@End_Date": "04/02/2024"}),
        (37686, {"@Include_Non_Scheduled": "1"}),
        (910010, {"@External_Ref": "none"}),
    ]:
        body = soap.result_xml(
            "1.1",
            "ExecuteDataSource",
            data_source_key=key,
            data_source_name="x",
            result_sets=sim.data_sources.run(sim.roles[key][0], inputs),
            instance_no="1",
        )
        payload = etree.fromstring(body).find(f".//{{{NS}}}ExecuteDataSourceResponse")
        assert payload is not None
        assert sim.schema.validate(etree.ElementTree(payload)), sim.schema.error_log


def test_sim_plex_process_serves_and_stops_on_sigterm(tmp_path) -> None:
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    config = tmp_path / "sim.yaml"
    config.write_text("sim:\n  plex:\n    port: 0\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "repsys", "-c", str(config), "--http-port", "0", "sim", "plex"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server is up (or the process died)
        assert line.startswith("simulated Plex at http://127.0.0.1:"), line
        url = line.split()[3]
        response = httpx.get(url + "?WSDL", timeout=5)
        assert response.status_code == 200
        assert b"ExecuteDataSourceRequest" in response.content
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
