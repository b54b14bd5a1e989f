"""The simulated Plex: an HTTP SOAP server on loopback, strict, with switchable faults.

It serves the WSDL RepSys ships (``GET /DataSource/Service.asmx?WSDL``), checks HTTP Basic
auth, validates each request against that WSDL, and answers the data sources of
:mod:`sim.plex.datasources`. Faults (latency, 500, 401, 429 with Retry-After, Error=true
bodies, malformed XML, an XXE/entity-expansion body, and "timeout after commit") come from
configuration or the admin endpoint, so tests and the demo can break it on purpose.

Admin endpoint (JSON, loopback only, no auth: this is a simulator)::

    GET  /admin/tickets                      created tickets
    POST /admin/tickets/<key>/status         {"status": "Closed"}: a planner closes it
    GET  /admin/faults                       probabilities, forced queue, counts
    POST /admin/faults                       {"http_429": 0.1, "queue": ["xxe"], ...}
    GET  /admin/requests                     every SOAP request seen (time, key, fault)
    POST /admin/reset                        forget tickets, requests; faults from config

Threads: one per connection (``ThreadingHTTPServer``), daemon, so a hung "timeout after
commit" never keeps the process alive; :meth:`PlexSimServer.stop` releases them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import json
import re
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from core.config.sim_plex import SimPlexConfig, SimWorkcenter
from core.logs import get_logger
from sim.plex import soap
from sim.plex.datasources import (
    ROLE_INPUTS,
    DataSourceFailedError,
    DataSources,
    LedgerProvider,
    SimTicket,
    TicketStore,
    seeded_ledger_provider,
)
from sim.plex.faults import FaultPlan

log = get_logger(__name__)

SERVICE_PATH = "/DataSource/Service.asmx"
MAX_BODY = 1 << 20  # Plex requests are small; a bigger body is refused (413)

#: Workcenters known when neither the config nor the caller names any: those of the
#: example, demo and test configurations.
DEFAULT_WORKCENTERS = [
    SimWorkcenter(key=61101, code="cnc101"),
    SimWorkcenter(key=61102, code="cnc102"),
    SimWorkcenter(key=61120, code="cnc120"),
    SimWorkcenter(key=61324, code="cnc103"),
    SimWorkcenter(key=61362, code="Honda Civic cnc 359 362"),
]


@dataclass(frozen=True)
class RequestRecord:
    """One SOAP request as the simulator saw it."""

    at: float  # time.time() when the request was read
    operation: str
    data_source_key: int
    fault: str | None
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    sim: PlexSimServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as zeep's session expects
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle and the client's
    # delayed ACK stall every keep-alive answer by about 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are recorded in RequestRecord, not in an access log

    # -- plumbing --------------------------------------------------------------------

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, b"request too large\n", "text/plain")
            return None
        return self.rfile.read(length)

    # -- routes ----------------------------------------------------------------------

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        sim = self.server.sim
        if parts.path == SERVICE_PATH and parts.query.lower() == "wsdl":
            self._send(200, soap.wsdl_text(sim.url), "text/xml; charset=utf-8")
        elif parts.path == "/admin/tickets":
            self._json(200, [t.to_dict() for t in sim.tickets()])
        elif parts.path == "/admin/faults":
            self._json(200, sim.faults.snapshot())
        elif parts.path == "/admin/requests":
            self._json(200, [asdict(r) for r in sim.requests()])
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if body is None:
            return
        if path == SERVICE_PATH:
            self.server.sim.busy(+1)
            try:
                self._soap(body)
            finally:
                self.server.sim.busy(-1)
        elif path.startswith("/admin/"):
            self._admin(path, body)
        else:
            self._send(404, b"not found\n", "text/plain")

    def _admin(self, path: str, body: bytes) -> None:
        sim = self.server.sim
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        status_route = re.fullmatch(r"/admin/tickets/(\d+)/status", path)
        if status_route:
            ticket = sim.set_ticket_status(int(status_route[1]), str(data.get("status", "")))
            if ticket is None:
                self._json(404, {"error": "no such ticket"})
            else:
                self._json(200, ticket.to_dict())
        elif path == "/admin/faults":
            try:
                sim.faults.configure(data)
            except (ValueError, ValidationError) as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, sim.faults.snapshot())
        elif path == "/admin/reset":
            sim.reset()
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": "not found"})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        cfg = self.server.sim.cfg
        if not hmac.compare_digest(user.encode(), cfg.username.encode()):
            return False
        if cfg.password is None:
            return True
        return hmac.compare_digest(password.encode(), cfg.password.get_secret_value().encode())

    def _soap(self, body: bytes) -> None:
        sim = self.server.sim
        at = time.time()
        if not self._authorized():
            sim.record(RequestRecord(at, "", 0, None, 401))
            self._send(
                401, b"Unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="Plex"'}
            )
            return
        ctype = self.headers.get("Content-Type", "")
        version = "1.2" if "soap+xml" in ctype else "1.1"
        try:
            request = soap.parse_request(
                body, sim.schema, soap_action=self.headers.get("SOAPAction"), content_type=ctype
            )
        except soap.SoapRequestError as exc:
            sim.record(RequestRecord(at, "", 0, None, 500))
            self._send(500, soap.fault_xml(version, str(exc)), soap.content_type(version))
            return
        fault = sim.faults.draw()
        status = self._fault_before(request, fault)
        if status is not None:
            sim.record(RequestRecord(at, request.operation, request.data_source_key, fault, status))
            return
        if fault == "commit_late":
            # Plex still working when the client gave up: the work commits later, maybe
            # after the client's lookup; the answer never arrives.
            if sim.stopping.wait(max(0.0, at + sim.faults.cfg.commit_delay_s - time.time())):
                return
            sim.answer(request)
            sim.record(RequestRecord(at, request.operation, request.data_source_key, fault, 200))
            self.close_connection = True
            return
        answer = sim.answer(request)
        sim.record(RequestRecord(at, request.operation, request.data_source_key, fault, 200))
        if fault == "timeout_after_commit":
            # The work is done (committed); the answer never arrives.
            sim.stopping.wait(sim.faults.cfg.hang_s)
            self.close_connection = True
            return
        self._send(200, answer, soap.content_type(request.version))

    def _fault_before(  # noqa: PLR0911 - one return per fault kind, flat on purpose
        self, request: soap.SoapRequest, fault: str | None
    ) -> int | None:
        """Inject a fault that happens before any work; the HTTP status sent, or None."""
        sim = self.server.sim
        cfg = sim.faults.cfg
        ctype = soap.content_type(request.version)
        if fault == "latency":
            sim.stopping.wait(cfg.latency_s)
            return None
        if fault == "http_500":
            self._send(500, b"<html><body>Internal Server Error</body></html>", "text/html")
            return 500
        if fault == "http_401":
            self._send(
                401, b"Unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="Plex"'}
            )
            return 401
        if fault == "http_429":
            headers = {"Retry-After": str(cfg.retry_after_s)}
            self._send(429, b"Too Many Requests\n", "text/plain", headers)
            return 429
        if fault == "error_body":
            body = soap.result_xml(
                request.version,
                request.operation,
                data_source_key=request.data_source_key,
                data_source_name="",
                result_sets=[],
                instance_no=sim.instance_no(),
                error_no=50000,
                message="Simulated failure: the data source was chosen as a deadlock victim.",
                unknown_elements=sim.cfg.unknown_elements,
            )
            self._send(200, body, ctype)
            return 200
        if fault == "malformed_xml":
            self._send(200, b'<?xml version="1.0"?><soap:Envelope xmlns:soap="', ctype)
            return 200
        if fault == "xxe":
            self._send(200, soap.XXE_BODY, ctype)
            return 200
        return None


class PlexSimServer:
    """The simulated Plex in threads of this process: ``start()``, ``url``, ``stop()``."""

    def __init__(
        self,
        cfg: SimPlexConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workcenters: list[SimWorkcenter] | None = None,
        ledger: LedgerProvider | None = None,
    ) -> None:
        self.cfg = cfg
        self.schema = soap.load_schema()
        self.store = TicketStore()
        self.faults = FaultPlan(cfg.faults)
        known = workcenters or cfg.workcenters or DEFAULT_WORKCENTERS
        self.data_sources = DataSources(
            known, self.store, ledger or seeded_ledger_provider(cfg.ledger_seed)
        )
        self.roles = {ds.key: (role, ds.name) for role, ds in cfg.data_sources.items()}
        self.stopping = threading.Event()
        self._records: list[RequestRecord] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        self._instances = itertools.count(880001)
        self._host = host
        self._http = _Server((host, port), _Handler)
        self._http.sim = self
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="sim-plex", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        """The Service.asmx endpoint."""
        return f"http://{self._host}:{self.port}{SERVICE_PATH}"

    @property
    def admin_url(self) -> str:
        return f"http://{self._host}:{self.port}/admin"

    def start(self) -> PlexSimServer:
        self._thread.start()
        log.info("sim_plex_started", url=self.url)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> PlexSimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------

    def tickets(self) -> list[SimTicket]:
        """Every ticket created so far (copies)."""
        return self.store.all()

    def set_ticket_status(self, key: int, status: str) -> SimTicket | None:
        return self.store.set_status(key, status)

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def busy(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta

    def in_flight(self) -> int:
        """SOAP requests being handled now (a test waits for 0 before it looks)."""
        with self._lock:
            return self._in_flight

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._records.append(rec)

    def reset(self) -> None:
        self.store.clear()
        self.faults.reset(self.cfg.faults)
        with self._lock:
            self._records.clear()

    def instance_no(self) -> str:
        return str(next(self._instances))

    # -- answering -------------------------------------------------------------------

    def answer(self, request: soap.SoapRequest) -> bytes:
        """The response body for a valid request (an Error=true body when it fails)."""
        role_name = self.roles.get(request.data_source_key)
        instance = self.instance_no()
        if request.operation == "GetDataSourceRequestTemplate":
            if role_name is None:
                inputs: list[tuple[str, bool]] = []
                name = ""
            else:
                inputs = list(ROLE_INPUTS[role_name[0]].items())
                name = role_name[1]
            return soap.template_xml(
                request.version,
                data_source_key=request.data_source_key,
                data_source_name=name,
                inputs=inputs,
                unknown_elements=self.cfg.unknown_elements,
            )

        def result(
            sets: list[list[dict[str, str]]], name: str, error_no: int = 0, message: str = "Success"
        ) -> bytes:
            return soap.result_xml(
                request.version,
                request.operation,
                data_source_key=request.data_source_key,
                data_source_name=name,
                result_sets=sets,
                instance_no=instance,
                error_no=error_no,
                message=message,
                unknown_elements=self.cfg.unknown_elements,
            )

        if role_name is None:
            message = (
                f"Data source {request.data_source_key} does not exist or is not granted "
                "to this account."
            )
            return result([], request.data_source_name, 50004, message)
        role, name = role_name
        try:
            return result(self.data_sources.run(role, request.inputs), name)
        except DataSourceFailedError as exc:
            return result([], name, exc.error_no, str(exc))
