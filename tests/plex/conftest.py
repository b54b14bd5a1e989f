"""Fixtures of the plex tests: a real simulated Plex, configs pointing at it, tickets."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.config import RepsysConfig
from core.config.sim_plex import SimPlexConfig
from core.db import session_factory
from core.db.schema import Ticket
from core.metrics import new_registry
from core.outbox import add_ticket
from plex.actions import PlexActions
from plex.client import PlexClient
from plex.metrics import PlexMetrics
from plex.ratelimit import RedisRateLimiter
from sim.plex.server import PlexSimServer
from tests.conftest import _merge

#: Set to 1 to run the Plex tests against a simulator that adds elements the WSDL does not
#: know to every answer (``sim.plex.unknown_elements``): ``make test`` runs them both ways.
UNKNOWN_ELEMENTS = os.environ.get("REPSYS_TEST_PLEX_UNKNOWN_ELEMENTS", "") == "1"
SIM_USER = "RepsysWs@plex.com"
SIM_PASSWORD_ENV = "REPSYS_TEST_PLEX_PASSWORD"
SIM_PASSWORD = "test-only-secret"


@pytest.fixture
def sim_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SIM_PASSWORD_ENV, SIM_PASSWORD)
    return SIM_PASSWORD


@pytest.fixture
def make_sim(sim_password: str) -> Iterator[Callable[..., PlexSimServer]]:
    """Factory: a started simulated Plex (stopped at the end of the test)."""
    started: list[PlexSimServer] = []

    def factory(**overrides: Any) -> PlexSimServer:
        from pydantic import SecretStr

        data: dict[str, Any] = {"username": SIM_USER, "unknown_elements": UNKNOWN_ELEMENTS}
        data = _merge(data, overrides)
        cfg = SimPlexConfig.model_validate(data)
        if "password" not in overrides:
            cfg = cfg.model_copy(update={"password": SecretStr(sim_password)})
        server = PlexSimServer(cfg).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., PlexSimServer]) -> PlexSimServer:
    return make_sim()


@pytest.fixture
def plex_config(
    make_config: Callable[..., RepsysConfig], sim: PlexSimServer
) -> Callable[..., RepsysConfig]:
    """Factory: the test config with ``plex`` pointing at the simulator, with overrides."""

    def factory(plex: dict[str, Any] | None = None, **sections: Any) -> RepsysConfig:
        base = {
            "endpoint": sim.url,
            "environment": "simulator",
            "username": SIM_USER,
            "password": {"env": SIM_PASSWORD_ENV},
            "operation_timeout_s": 2.0,
            "connect_timeout_s": 1.0,
            "rate_limit": {"per_minute": 60000, "burst": 100, "max_wait_s": 5},
            "sender": {
                "backoff_base_s": 0.01,
                "backoff_cap_s": 0.05,
                "ambiguous_delay_s": 0.0,
                "claim_ttl_s": 30,
                "batch_size": 50,
            },
        }
        return make_config(plex=_merge(base, plex or {}), **sections)

    return factory


@pytest.fixture
def sessions(sqlite_engine: Engine) -> sessionmaker[Session]:
    return session_factory(sqlite_engine)


def build_actions(
    cfg: RepsysConfig, redis_client: Any, metrics: PlexMetrics | None = None
) -> PlexActions:
    metrics = metrics or PlexMetrics(new_registry())
    limiter = RedisRateLimiter(redis_client, cfg.plex.rate_limit, metrics=metrics)
    return PlexActions(PlexClient(cfg.plex, metrics=metrics, limiter=limiter), cfg.plex.actions)


def add_tickets(
    sessions: sessionmaker[Session],
    cfg: RepsysConfig,
    n: int,
    *,
    machine: str = "cnc101",
    kind: str = "maintenance_work_request",
    prefix: str = "RS-T",
) -> list[int]:
    """``n`` pending tickets with references ``<prefix>00000``...; their ids."""
    found = cfg.machine(machine)
    assert found is not None
    ids = []
    with sessions() as session, session.begin():
        for i in range(n):
            ticket = add_ticket(
                session,
                machine=found,
                source="operator",
                title=f"Broken engraver {i}",
                description=f"Engraver on {machine} does not mark parts ({i})",
                severity="high",
                kind=kind,
                reporter="badge-17",
                external_ref=f"{prefix}{i:05d}",
            )
            ids.append(ticket.id)
    return ids


def tickets_by_state(sessions: sessionmaker[Session]) -> dict[str, list[Ticket]]:
    out: dict[str, list[Ticket]] = {}
    with sessions() as session:
        for t in session.query(Ticket).order_by(Ticket.id):
            out.setdefault(t.state, []).append(t)
    return out


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
