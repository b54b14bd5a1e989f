"""The demo's local mailbox: mails sent by the real sender land as .eml files with an index."""

from __future__ import annotations

from pathlib import Path

from core import deliveries
from core.config import parse_config
from core.db.engine import session_factory
from notify.sender import DeliverySender
from repsys.servers import free_port
from sim.mailbox.server import Mailbox


def test_sender_mail_lands_in_the_mailbox_folder(tmp_path: Path, sqlite_engine) -> None:
    port = free_port()
    box = Mailbox(tmp_path / "mailbox", port=port).start()
    try:
        cfg = parse_config(
            {
                "notify": {
                    "receivers": [{"name": "supervisors", "email": {"to": ["sup@demo.plant"]}}],
                    "route": {"receiver": "supervisors"},
                    "smtp": {"port": port},
                }
            }
        )
        sessions = session_factory(sqlite_engine)
        title = "Tooling Issue: Tool 1 on CNC 103 is not reaching tool life and more words to fold"
        with sessions() as s, s.begin():
            deliveries.enqueue(
                s,
                key="k",
                receiver="supervisors",
                integration="email",
                items=[deliveries.Item("1:escalated:2")],
                payload={
                    "notices": [
                        {"event": "escalated", "level": 2, "machine": "cnc103", "title": title}
                    ]
                },
            )
        assert DeliverySender(cfg.notify, sessions, name="t").run_once() == 1
    finally:
        box.stop()
    [eml] = sorted((tmp_path / "mailbox").glob("*.eml"))
    assert eml.name == "00001-sup@demo.plant.eml"
    index = (tmp_path / "mailbox" / "index.txt").read_text()
    assert index == f"{eml.name}\tcnc103: {title} escalated to level 2\n"  # one line, unfolded
