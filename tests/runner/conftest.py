"""Fixtures of the runner tests: a ledger behind the real SQLite ODBC driver, the real
simulated Plex serving data source 4814 from the same ledger, a local SMTP server, a local
Teams webhook receiver, and runners built on the test's Redis and database.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.config import RepsysConfig
from core.config.sim_plex import SimPlexConfig
from core.db import session_factory
from core.db.schema import ReportRequestRow
from core.lifecycle import Stopper
from core.metrics import new_registry
from repsys.servers import free_port
from runner.metrics import RunnerMetrics
from runner.requests import submit
from runner.services import build_services, build_tb_sources
from runner.steps import Services
from runner.tb.source import TbSources
from runner.worker import Runner
from sim.accounting.ledger import Ledger
from sim.accounting.odbc import AmountType, build_database, connection_string
from sim.plex.server import PlexSimServer
from tests.conftest import _merge

#: make_runner keywords that are the trial balance's sources, not Services fields.
TB_SOURCE_FIELDS = frozenset(f.name for f in fields(TbSources))

SIM_USER = "RepsysWs@plex.com"
SIM_PASSWORD_ENV = "REPSYS_TEST_RUNNER_PLEX_PASSWORD"
SIM_PASSWORD = "runner-test-secret"
PCNS = [123681, 300758]


# --- SMTP and Teams receivers ------------------------------------------------------------


@dataclass
class Mailbox:
    """Mails received by the local SMTP server."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


class _SmtpHandler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.box.messages.append(mail)
        self.box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server (aiosmtpd) on a free port, and what it received."""
    box = Mailbox()
    port = free_port()
    controller = Controller(_SmtpHandler(box), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, box
    controller.stop()


@dataclass
class Webhook:
    """What the local Teams webhook receiver got; ``status`` is what it answers."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def teams() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            hook.posts.append(json.loads(self.rfile.read(length)))
            self.send_response(hook.status)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"1")

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/webhookb2/test"
    yield hook
    server.shutdown()
    server.server_close()


# --- accounting data and the simulated Plex --------------------------------------------


@pytest.fixture
def plex_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SIM_PASSWORD_ENV, SIM_PASSWORD)
    return SIM_PASSWORD


@dataclass
class Accounting:
    """A ledger behind ODBC and behind the simulated Plex."""

    ledger: Ledger
    db_path: Path
    sim: PlexSimServer
    amounts: AmountType = "real"

    @property
    def odbc(self) -> str:
        return connection_string(self.db_path)

    def rebuild(self) -> None:
        """Write the (changed) ledger again; the simulator reads the same object."""
        build_database(self.ledger, self.db_path, amounts=self.amounts)


@pytest.fixture
def make_accounting(tmp_path: Path, plex_password: str) -> Iterator[Callable[..., Accounting]]:
    """Factory: ``ledger`` behind ODBC (its balances typed ``amounts``: real, decimal or
    text) and behind the simulated Plex."""
    started: list[PlexSimServer] = []

    def factory(ledger: Ledger, amounts: AmountType = "real") -> Accounting:
        path = build_database(ledger, tmp_path / f"accounting{len(started)}.db", amounts=amounts)
        cfg = SimPlexConfig.model_validate({"username": SIM_USER}).model_copy(
            update={"password": SecretStr(plex_password)}
        )
        # The bound method reads the same ledger object: a test that posts more entries
        # is served them.
        sim = PlexSimServer(cfg, ledger=ledger.account_activity_summary).start()
        started.append(sim)
        return Accounting(ledger, path, sim, amounts)

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def seeded(make_accounting: Callable[[Ledger], Accounting]) -> Accounting:
    return make_accounting(Ledger.seeded())


@pytest.fixture
def runner_config(
    make_config: Callable[..., RepsysConfig], tmp_path: Path
) -> Callable[..., RepsysConfig]:
    """Factory: the test config plus a runner section on ``accounting`` and the simulator."""

    def factory(
        accounting: Accounting | None = None,
        runner: dict[str, Any] | None = None,
        **sections: Any,
    ) -> RepsysConfig:
        base: dict[str, Any] = {
            "output_dir": str(tmp_path / "reports"),
            "lease_ttl_s": 5.0,
            "claim_idle_s": 5.0,
            "block_s": 0.2,
            "tb": {"pcns": PCNS},
        }
        extra: dict[str, Any] = {}
        if runner and "pipelines" in runner and "scheduler" not in runner:
            # A test's own pipelines replace the default kinds the default schedules name.
            base["scheduler"] = {"schedules": []}
        if accounting is not None:
            base["tb"]["odbc"] = {"connection_string": accounting.odbc}
            extra["plex"] = {
                "endpoint": accounting.sim.url,
                "environment": "simulator",
                "username": SIM_USER,
                "password": {"env": SIM_PASSWORD_ENV},
                "operation_timeout_s": 10.0,
                "connect_timeout_s": 2.0,
            }
        return make_config(runner=_merge(base, runner or {}), **_merge(extra, sections))

    return factory


@pytest.fixture
def sessions(sqlite_engine: Engine) -> sessionmaker[Session]:
    return session_factory(sqlite_engine)


@dataclass
class Harness:
    """A runner in this process, with what it was built from."""

    runner: Runner
    cfg: RepsysConfig
    sessions: sessionmaker[Session]
    redis: redis.Redis
    registry: Any
    services: Services

    def burst(self) -> int:
        return self.runner.work(burst=True)

    def run_tb(self, start: int, end: int, pcns: tuple[int, ...] = (123681,)) -> ReportRequestRow:
        """Submit a trial balance of ``start..end`` and run it here; the request after it."""
        row = submit(
            self.sessions,
            self.redis,
            self.cfg,
            kind="tb",
            params={"start": start, "end": end, "pcns": list(pcns)},
            requester="dan@plant.example",
        )
        assert self.burst() == 1
        with self.sessions() as s:
            done = s.get(ReportRequestRow, row.id)
        assert done is not None
        return done


@pytest.fixture
def make_runner(
    redis_client: redis.Redis, sessions: sessionmaker[Session]
) -> Callable[..., Harness]:
    """Factory: a :class:`Runner` on the test's Redis and database for ``cfg``."""

    def factory(
        cfg: RepsysConfig,
        *,
        services: Services | None = None,
        db: sessionmaker[Session] | None = None,
        consumer: str = "test-runner",
        pipelines: dict[str, list[Any]] | None = None,
        **service_overrides: Any,
    ) -> Harness:
        registry = new_registry()
        svc = services or build_services(cfg, redis_client)
        tb = build_tb_sources(cfg, redis_client)
        for key, value in service_overrides.items():
            # The trial balance's sources go to its steps; the rest to every step's Services.
            setattr(tb if key in TB_SOURCE_FIELDS else svc, key, value)
        db = db or sessions
        runner = Runner(
            cfg,
            sessions=db,
            redis_client=redis_client,
            services=svc,
            metrics=RunnerMetrics(registry),
            stopper=Stopper(),
            consumer=consumer,
            pipelines=pipelines,
            tb_sources=tb,
        )
        return Harness(runner, cfg, db, redis_client, registry, svc)

    return factory
