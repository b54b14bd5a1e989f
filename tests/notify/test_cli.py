"""``repsys notify --once`` and ``repsys notify outbox list|replay``, in process, on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import yaml
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

import core.cli
import notify.commands
from core.config import load_config
from core.config.infra import DatabaseConfig
from core.db import make_engine, session_factory, upgrade
from core.db.schema import NotifyDelivery, Ticket, TicketEvent, utcnow
from core.outbox import add_ticket
from repsys.cli import main
from tests.conftest import TEST_MACHINES
from tests.notify.receivers import Inbox, mails, smtp_server


@pytest.fixture(autouse=True)
def _uncached_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # configure_logging caches loggers bound to this test's captured stderr, which later
    # tests would write to once it is closed (as tests/plex/test_cli.py explains).
    monkeypatch.setattr(core.cli, "configure_logging", lambda *a, **k: None)
    monkeypatch.setattr(notify.commands, "configure_logging", lambda *a, **k: None)
    yield
    structlog.reset_defaults()


def _setup(tmp_path: Path, smtp_port: int) -> tuple[Path, sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'repsys.db'}"
    cfg = {
        "machines": TEST_MACHINES,
        "database": {"url": url},
        "notify": {
            "defaults": {"group_wait_s": 0},
            "receivers": [{"name": "maintenance", "email": {"to": ["mnt@plant.example"]}}],
            "route": {"receiver": "maintenance"},
            "smtp": {"port": smtp_port},
        },
    }
    path = tmp_path / "repsys.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = make_engine(DatabaseConfig(url=url))
    upgrade(engine)
    return path, session_factory(engine)


def test_once_routes_a_filed_ticket_to_the_mailbox_then_outbox_tools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        path, sessions = _setup(tmp_path, port)
        machine = load_config(path).machine("cnc103")
        assert machine is not None
        with sessions() as s, s.begin():
            t = add_ticket(s, machine=machine, source="rule", title="Tool 1 worn", description="d")
            s.execute(
                update(Ticket).where(Ticket.id == t.id).values(state="filed", plex_number="WR1")
            )
            s.add(TicketEvent(ticket_id=t.id, at=utcnow(), event="filed", detail="WR1"))
        assert main(["-c", str(path), "notify", "--once"]) == 0
        assert "attempted 1 deliveries" in capsys.readouterr().out
    [mail] = mails(inbox)
    assert mail["Subject"] == "cnc103: Tool 1 worn (Plex WR1) filed"

    with sessions() as s, s.begin():
        s.execute(
            update(NotifyDelivery).values(
                state="dead", last_error_reason="smtp_refused", last_error="550"
            )
        )
    assert main(["-c", str(path), "notify", "outbox", "list", "--state", "dead"]) == 0
    out = capsys.readouterr().out
    assert "dead" in out and "maintenance/email" in out and "smtp_refused: 550" in out
    assert main(["-c", str(path), "notify", "outbox", "replay"]) == 2  # ids or --dead
    capsys.readouterr()
    assert main(["-c", str(path), "notify", "outbox", "replay", "--dead"]) == 0
    assert capsys.readouterr().out.strip() == "replayed 1 deliveries"
    with sessions() as s:
        assert s.scalars(select(NotifyDelivery.state)).one() == "pending"
