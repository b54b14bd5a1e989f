"""Fixtures of the web tests: the real app served by uvicorn in a thread, real clients.

``start_web(...)`` builds the app on the test's Redis and migrated SQLite (or PostgreSQL)
database, serves it on a free loopback port and returns a :class:`RunningWeb`; every
server started is stopped at the end of the test. ``users`` adds the standard accounts.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.config import RepsysConfig
from core.config.sim_plex import SimPlexConfig
from core.db import session_factory
from core.db.schema import User
from core.lifecycle import Stopper
from core.metrics import new_registry
from core.redis import connect_sync
from history.read import HistorySeries
from history.toollife import HistoryToolLife
from plex.commands import build_sender
from repsys.servers import wait_until
from runner.commands import build_runner
from sim.accounting.ledger import Ledger
from sim.accounting.odbc import build_database, connection_string
from sim.plex.server import PlexSimServer
from tests.conftest import _merge
from web import accounts
from web.app import create_app
from web.commands import uvicorn_config

PASSWORD = "correct horse battery"
PIN = "4321"


@dataclass
class RunningWeb:
    """A served web app and what a test needs to look behind it."""

    url: str
    cfg: RepsysConfig
    sessions: sessionmaker[Session]
    registry: CollectorRegistry
    stopper: Stopper
    server: uvicorn.Server
    thread: threading.Thread
    redis: Any
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        c = httpx.Client(base_url=self.url, follow_redirects=False, timeout=10, **kwargs)
        self.clients.append(c)
        return c

    def login(self, username: str, password: str = PASSWORD) -> httpx.Client:
        """A client logged in with a password (CSRF token taken from the login page)."""
        c = self.client()
        token = csrf_of(c.get("/login").text)
        resp = c.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}
        )
        assert resp.status_code == 303, resp.text
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.stopper.stop()
        self.server.should_exit = True
        self.thread.join(15)
        self.redis.close()


def csrf_of(html: str) -> str:
    """The CSRF token a page carries in its <meta> tag."""
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@functools.cache
def hashed(secret: str) -> str:
    """Argon2 takes a quarter second a hash here: hash the test secrets once per session."""
    return accounts.hash_secret(secret)


def add_users(sessions: sessionmaker[Session]) -> None:
    """operator olga (badge 1001), supervisor sam, controller dan, admin ada.

    All with PASSWORD (and olga's PIN), stored as real Argon2 hashes.
    """
    people = [
        ("olga", "operator", "Olga Operator", "1001"),
        ("sam", "supervisor", "Sam Supervisor", None),
        ("dan", "controller", "Dan Controller", None),
        ("ada", "admin", "", None),
    ]
    with sessions.begin() as s:
        for username, roles, name, badge in people:
            s.add(
                User(
                    username=username,
                    roles=roles,
                    display_name=name,
                    password_hash=hashed(PASSWORD),
                    badge=badge,
                    pin_hash=hashed(PIN) if badge else None,
                )
            )


@pytest.fixture
def start_web(
    make_config: Callable[..., RepsysConfig], sqlite_engine: Engine
) -> Iterator[Callable[..., RunningWeb]]:
    running: list[RunningWeb] = []

    def factory(
        overrides: dict[str, Any] | None = None,
        *,
        engine: Engine | None = None,
        users: bool = True,
        clock: Any = None,
        tool_life: Any = HistoryToolLife,
        history_series: Any = HistorySeries,
    ) -> RunningWeb:
        base = {"web": {"cookie_secure": False}}
        cfg = make_config(_merge(base, overrides or {}))
        eng = engine or sqlite_engine
        sessions = session_factory(eng)
        if users:
            add_users(sessions)
        registry = new_registry()
        stopper = Stopper()
        redis = connect_sync(cfg.redis)
        kwargs: dict[str, Any] = {"clock": clock} if clock else {}
        # The signal history's readers as ``repsys web`` wires them (None: not wired in).
        kwargs["tool_life"] = tool_life(cfg) if tool_life is not None else None
        kwargs["history_series"] = history_series(cfg) if history_series is not None else None
        app = create_app(cfg, engine=eng, redis=redis, registry=registry, stopper=stopper, **kwargs)
        server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0))
        thread = threading.Thread(target=server.run, name="web-test", daemon=True)
        thread.start()
        wait_until(lambda: server.started, timeout=15, what="web app")
        port = server.servers[0].sockets[0].getsockname()[1]
        web = RunningWeb(
            url=f"http://127.0.0.1:{port}",
            cfg=cfg,
            sessions=sessions,
            registry=registry,
            stopper=stopper,
            server=server,
            thread=thread,
            redis=redis,
        )
        running.append(web)
        return web

    yield factory
    for web in running:
        web.stop()


# --- the simulated Plex, the sender and the runner, for end-to-end pages ----------------

SIM_USER = "RepsysWs@plex.com"
SIM_PASSWORD_ENV = "REPSYS_TEST_WEB_PLEX_PASSWORD"


@dataclass
class Accounting:
    """Config sections for Plex and the runner, and the simulated Plex behind them."""

    sections: dict[str, Any]
    sim: PlexSimServer


@pytest.fixture
def plex_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Accounting]:
    """The seeded ledger behind ODBC and behind a real simulated Plex (4814 and tickets)."""
    monkeypatch.setenv(SIM_PASSWORD_ENV, "web-test-secret")
    ledger = Ledger.seeded()
    db = build_database(ledger, tmp_path / "accounting.db")
    sim_cfg = SimPlexConfig.model_validate({"username": SIM_USER}).model_copy(
        update={"password": SecretStr("web-test-secret")}
    )
    sim = PlexSimServer(sim_cfg, ledger=ledger.account_activity_summary).start()
    sections = {
        "runner": {
            "output_dir": str(tmp_path / "reports"),
            "lease_ttl_s": 5.0,
            "block_s": 0.2,
            "tb": {"pcns": [123681, 300758], "odbc": {"connection_string": connection_string(db)}},
        },
        "plex": {
            "endpoint": sim.url,
            "environment": "simulator",
            "username": SIM_USER,
            "password": {"env": SIM_PASSWORD_ENV},
            "operation_timeout_s": 10.0,
            "connect_timeout_s": 2.0,
            "sender": {"backoff_base_s": 0.01, "backoff_cap_s": 0.05, "ambiguous_delay_s": 0.0},
        },
    }
    yield Accounting(sections, sim)
    sim.stop()


@pytest.fixture
def accounting(plex_world: Accounting) -> dict[str, Any]:
    """Just the config sections of :func:`plex_world`."""
    return plex_world.sections


def run_runner(web: RunningWeb) -> int:
    """``repsys runner --burst`` in this process, on the web app's config."""
    runner = build_runner(web.cfg, registry=new_registry(), stopper=Stopper(), consumer="t")
    try:
        return int(runner.work(burst=True))
    finally:
        runner.redis.close()


def run_sender(web: RunningWeb) -> int:
    """``repsys plex-sender --once`` in this process, on the web app's config and database."""
    return int(build_sender(web.cfg, sessions=web.sessions).drain())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the schemathesis run walked per role (tests/web/test_api_contract.py)."""
    from tests.web.test_api_contract import OPERATIONS, WALKED

    if WALKED:
        terminalreporter.section("API contract (schemathesis)")
        terminalreporter.write_line("operations: " + ", ".join(OPERATIONS))
        for role, line in WALKED.items():
            terminalreporter.write_line(f"{role}: {line}")
