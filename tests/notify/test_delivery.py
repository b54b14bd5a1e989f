"""Deliveries against a real SMTP server (aiosmtpd) and a local webhook, on PostgreSQL.

The sender runs as ``repsys notify --send-only`` processes, killed with SIGKILL while the
receivers are slow and refuse 30 % of calls. Every (ticket event, receiver) must arrive:
once when no sender died holding it, and at most once more per kill otherwise, always
with the same key, so the receiver keeps exactly one (docs/decisions/0321).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from core import deliveries as outbox
from core.config import parse_config
from core.db.engine import session_factory
from core.db.schema import NotifyDelivery, utcnow
from core.metrics import new_registry, sample
from notify.channels import message_id
from notify.metrics import NotifyMetrics
from notify.sender import DeliverySender
from tests.conftest import REPO
from tests.notify.receivers import Inbox, mails, smtp_server, webhook_server

EVIDENCE = {
    "series": [{"name": "tool_counter", "points": [[0, 1], [60, 5], [120, 9]], "limit": 10}]
}


def _config(pg_url: str, smtp_port: int, hook: str, **outbox_cfg: float) -> dict[str, Any]:
    return {
        "database": {"url": pg_url},
        "notify": {
            "receivers": [
                {"name": "supervisors", "email": {"to": ["sup@plant.example"]}},
                {"name": "cell-team", "teams": {"url": hook}},
            ],
            "route": {"receiver": "supervisors"},
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "timeout_s": 5},
            "outbox": {
                "backoff_s": 0.05,
                "backoff_max_s": 0.3,
                "claim_ttl_s": 2,
                "max_attempts": 100,
                "batch_size": 5,
                **outbox_cfg,
            },
            "escalation": {"enabled": False},
        },
    }


def _enqueue(sessions, n: int) -> list[str]:
    keys = []
    with sessions() as s, s.begin():
        for i in range(n):
            for receiver, integration in (("supervisors", "email"), ("cell-team", "teams")):
                key = f"{receiver}.{integration}.{i}"
                outbox.enqueue(
                    s,
                    key=key,
                    receiver=receiver,
                    integration=integration,
                    items=[outbox.Item(f"{i}:escalated:2", i)],
                    payload={
                        "notices": [
                            {
                                "ticket": i,
                                "event": "escalated",
                                "level": 2,
                                "machine": "cnc103",
                                "title": f"Tool {i} worn",
                                "plex_number": f"WR{i}",
                            }
                        ],
                        "evidence": EVIDENCE,
                        "chart": True,
                    },
                )
                keys.append(key)
    return keys


def _wait(condition, deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _sender(cfg_path: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "repsys",
            "-c",
            str(cfg_path),
            "--http-port",
            "0",
            "notify",
            "--send-only",
            "--name",
            name,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _states(sessions) -> Counter[str]:
    with sessions() as s:
        return Counter(
            dict(
                s.execute(
                    select(NotifyDelivery.state, func.count()).group_by(NotifyDelivery.state)
                ).all()
            )
        )


def test_exactly_one_per_key_through_kills_and_30_percent_failures(
    pg_engine: Engine, pg_url: str, tmp_path: Path
) -> None:
    sessions = session_factory(pg_engine)
    mail_inbox = Inbox(fail_rate=0.3, delay_s=0.03, seed=7)
    hook_inbox = Inbox(fail_rate=0.3, delay_s=0.03, seed=8)
    with smtp_server(mail_inbox) as smtp_port, webhook_server(hook_inbox) as hook:
        cfg_path = tmp_path / "repsys.yaml"
        cfg_path.write_text(yaml.safe_dump(_config(pg_url, smtp_port, hook)))
        keys = _enqueue(sessions, 40)
        kills = 0
        for round_no in range(5):
            proc = _sender(cfg_path, f"s{round_no}")
            before = len(mail_inbox.keys()) + len(hook_inbox.keys())
            # Kill once the sender is visibly delivering: mid-stream, not before it starts.
            _wait(
                lambda b=before: len(mail_inbox.keys()) + len(hook_inbox.keys()) >= b + 6,
                60,
                "progress",
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
        # A last sender finishes the work (including the rows the killed ones held).
        proc = _sender(cfg_path, "final")
        try:
            _wait(lambda: _states(sessions) == Counter({"sent": len(keys)}), 120, "all sent")
        finally:
            proc.terminate()
            proc.wait(10)

    assert mail_inbox.refused > 0 and hook_inbox.refused > 0
    got_mail = Counter(mail_inbox.keys())
    got_hook = Counter(hook_inbox.keys())
    expected_mail = {message_id(k) for k in keys if ".email." in k}
    expected_hook = {k for k in keys if ".teams." in k}
    # Every key arrived; a receiver keeping keys holds exactly one of each.
    assert set(got_mail) == expected_mail
    assert set(got_hook) == expected_hook
    # A second arrival only where a killed sender had sent before recording it.
    duplicates = sum(c - 1 for c in got_mail.values()) + sum(c - 1 for c in got_hook.values())
    print(
        f"kills={kills} refused={mail_inbox.refused + hook_inbox.refused} duplicates={duplicates}"
    )
    assert duplicates <= kills
    # The webhook got Adaptive Cards.
    card = json.loads(hook_inbox.accepted[0][1])
    [attachment] = card["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["body"][0]["text"].startswith("cnc103: Tool ")


def test_mail_has_html_plain_text_and_the_chart_inline(pg_engine: Engine, pg_url: str) -> None:
    sessions = session_factory(pg_engine)
    inbox = Inbox()
    with smtp_server(inbox) as port, webhook_server(Inbox()) as hook:
        cfg = parse_config(_config(pg_url, port, hook))
        _enqueue(sessions, 1)
        sender = DeliverySender(cfg.notify, sessions, name="t")
        assert sender.run_once() == 2
    [mail] = mails(inbox)
    assert mail["Subject"] == "cnc103: Tool 0 worn (Plex WR0) escalated to level 2"
    types = [part.get_content_type() for part in mail.walk()]
    assert types == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html").get_payload(
        decode=True
    )
    assert b'src="cid:evidence"' in html
    png = next(p for p in mail.walk() if p.get_content_type() == "image/png")
    assert png["Content-ID"] == "<evidence>"
    data = png.get_payload(decode=True)
    assert isinstance(data, bytes) and data.startswith(b"\x89PNG\r\n\x1a\n")


def test_refusals_dead_letter_with_the_reason_and_replay(pg_engine: Engine, pg_url: str) -> None:
    sessions = session_factory(pg_engine)
    with smtp_server(Inbox(fail_rate=1.0)) as port, webhook_server(Inbox()) as hook:
        cfg = parse_config(
            _config(pg_url, port, hook, max_attempts=2, backoff_s=0.01, backoff_max_s=0.01)
        )
        _enqueue(sessions, 1)
        registry = new_registry()
        metrics = NotifyMetrics(registry)
        sender = DeliverySender(cfg.notify, sessions, name="t", metrics=metrics)
        sender.run_once()
        sender.run_once(utcnow() + timedelta(seconds=1))
    labels = {"receiver": "supervisors", "integration": "email"}
    failed = {**labels, "reason": "smtp_transient"}
    assert sample(registry, "repsys_notify_failed_total", failed) == 2
    assert sample(registry, "repsys_notify_dead_total", failed) == 1
    teams = {"receiver": "cell-team", "integration": "teams"}
    assert sample(registry, "repsys_notify_sent_total", teams) == 1
    assert (
        sample(registry, "repsys_notify_send_duration_seconds_count", {"integration": "email"}) == 2
    )
    with sessions() as s:
        rows = {r.integration: r for r in s.scalars(select(NotifyDelivery))}
    assert rows["teams"].state == "sent"
    assert (rows["email"].state, rows["email"].last_error_reason) == (
        "dead",
        "attempts_exhausted:smtp_transient",
    )
    assert outbox.replay(sessions, None, utcnow()) == 1
    with smtp_server(Inbox()) as port, webhook_server(Inbox()) as hook:
        cfg = parse_config(_config(pg_url, port, hook))
        assert DeliverySender(cfg.notify, sessions, name="t").run_once() == 1
    assert _states(sessions) == Counter({"sent": 2})


def test_the_same_event_cannot_be_enqueued_twice_for_a_receiver(pg_engine: Engine) -> None:
    sessions = session_factory(pg_engine)
    _enqueue(sessions, 1)
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        outbox.enqueue(
            s,
            key="another-message",
            receiver="supervisors",
            integration="email",
            items=[outbox.Item("0:escalated:2", 0)],
            payload={},
        )
