"""The escalation report and the tool check: from real tickets, episodes and signal streams,
delivered to a real SMTP server and a local Teams webhook receiver."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.db.schema import Episode, ReportRequestRow, Ticket
from core.model import Signal
from core.outbox import add_ticket
from repsys.servers import wait_until
from runner.requests import submit
from tests.runner.conftest import Harness, Mailbox, Webhook

NOW = datetime(2024, 7, 8, 14, 5, tzinfo=UTC)
SHIFT_START = datetime(2024, 7, 8, 6, 0, tzinfo=UTC)


def escalation_cfg(
    runner_config: Callable[..., RepsysConfig], port: int, hook: Webhook, **escalation: Any
) -> RepsysConfig:
    return runner_config(
        runner={
            "smtp": {"host": "127.0.0.1", "port": port, "sender": "repsys@plant.example"},
            "teams": {"webhook_url": {"env": "REPSYS_TEST_TEAMS_URL"}},
            "escalation": {
                "to": ["eng@plant.example"],
                "teams": True,
                "levels": [
                    {"name": "supervisor", "after_hours": 4, "to": ["sup@plant.example"]},
                    {"name": "manager", "after_hours": 24, "to": ["mgr@plant.example"]},
                ],
                "standard_cycle_s": {"cnc101": 54.0},
                **escalation,
            },
        }
    )


def episode(
    machine: str,
    rule: str,
    rule_type: str,
    start: datetime,
    *,
    subject: str = "",
    end: datetime | None = None,
    occurrence: int = 1,
    summary: str = "",
) -> Episode:
    return Episode(
        fingerprint=f"{machine}|{rule}|{subject}",
        occurrence=occurrence,
        machine_id=machine,
        rule=rule,
        rule_type=rule_type,
        subject=subject,
        severity="medium",
        state="firing",
        summary=summary,
        evidence={},
        started_at=start,
        last_seen_at=end or start,
        resolved_at=end,
    )


def seed_plant(cfg: RepsysConfig, sessions: sessionmaker[Session], client: redis.Redis) -> None:
    machines = {m.id: m for m in cfg.machines}
    with sessions.begin() as s:
        for machine, severity, hours in (
            ("cnc101", "high", 5),
            ("cnc102", "low", 30),
            ("cnc103", "medium", 1),
        ):
            add_ticket(
                s,
                machine=machines[machine],
                source="operator",
                severity=severity,
                title=f"{machine} problem",
                description="seen on the floor",
                now=NOW - timedelta(hours=hours),
            )
        for i in range(3):  # recurring: three episodes of one fingerprint this week
            s.add(
                episode(
                    "cnc103",
                    "spindle",
                    "spindle_load_drift",
                    NOW - timedelta(days=i + 1),
                    subject="T7",
                    occurrence=i + 1,
                )
            )
        s.add(
            episode(
                "cnc101",
                "tool-life",
                "tool_life_short",
                SHIFT_START + timedelta(hours=3),
                subject="T1",
                summary="Tool 1 on CNC 101 is not reaching tool life",
            )
        )
        # Downtime 08:00-10:00 inside the shift (and one before it, which does not count).
        s.add(
            episode(
                "cnc101",
                "down",
                "downtime",
                SHIFT_START + timedelta(hours=2),
                end=SHIFT_START + timedelta(hours=4),
            )
        )
        s.add(
            episode(
                "cnc101",
                "down",
                "downtime",
                SHIFT_START - timedelta(hours=3),
                end=SHIFT_START - timedelta(hours=1),
                occurrence=2,
            )
        )
    # cnc101's signals in its partition: 300 cycles of 60 s, 270 good and 30 bad parts,
    # counted from the counters' last values before the shift.
    stream = keys.signal_stream(keys.partition_of("cnc101", cfg.streams.partitions))
    base_ms = int((SHIFT_START + timedelta(minutes=30)).timestamp() * 1000)
    before_ms = int((SHIFT_START - timedelta(minutes=1)).timestamp() * 1000)
    pipe: Any = client.pipeline()
    pipe.xadd(stream, Signal("cnc101", "part_count_good", 100).to_fields(), id=f"{before_ms}-1")
    pipe.xadd(stream, Signal("cnc101", "part_count_bad", 2).to_fields(), id=f"{before_ms}-2")
    for i in range(300):
        sig = Signal("cnc101", "cycle_time", 60.0, source_ts=0.0, receive_ts=0.0)
        pipe.xadd(stream, sig.to_fields(), id=f"{base_ms + i * 60_000}-0")
    for i, (good, bad) in enumerate(((150, 12), (370, 32))):
        ms = base_ms + 300 * 60_000 + i * 1000
        pipe.xadd(stream, Signal("cnc101", "part_count_good", good).to_fields(), id=f"{ms}-1")
        pipe.xadd(stream, Signal("cnc101", "part_count_bad", bad).to_fields(), id=f"{ms}-2")
    pipe.execute()


def test_escalation_report_by_mail_and_teams(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    smtp: tuple[int, Mailbox],
    teams: Webhook,
    redis_client: redis.Redis,
    monkeypatch: Any,
) -> None:
    port, box = smtp
    monkeypatch.setenv("REPSYS_TEST_TEAMS_URL", teams.url)
    cfg = escalation_cfg(runner_config, port, teams)
    harness = make_runner(cfg, clock=lambda: NOW)
    seed_plant(cfg, harness.sessions, redis_client)
    row = submit(
        harness.sessions,
        redis_client,
        cfg,
        kind="escalation",
        params={"shift": "first"},
        requester="scheduler",
    )
    assert harness.burst() == 1
    with harness.sessions() as s:
        done = s.get(ReportRequestRow, row.id)
        assert done is not None and done.state == "completed", done and done.error
        levels = {t.machine_id: t.escalation_level for t in s.scalars(select(Ticket))}
    assert levels == {"cnc101": 0, "cnc102": 0, "cnc103": 0}  # read, not written: plex's
    assert done.result_path and done.result_path.endswith("/Escalation-first-2024-07-08.html")

    report = next(
        m for m in box.messages if m["Subject"] == "Escalation report - first shift 07-08-2024"
    )
    rcpts = next(r for (_, r), m in zip(box.envelopes, box.messages, strict=True) if m is report)
    assert sorted(rcpts) == ["eng@plant.example", "mgr@plant.example", "sup@plant.example"]
    html = report.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "3 open tickets, 1 past their SLA." in html  # cnc101: high, 5 h > 4 h
    text = report.get_body(("plain",)).get_content().splitlines()  # type: ignore[union-attr]
    assert text[3] == (
        "3 open tickets, 1 past their SLA; 1 recurring episode; "
        "1 machine with tools not reaching tool life."
    )
    assert (
        "- cnc102: ticket 2 (low), pending, open 1 d 6 h (SLA 72 h), manager: cnc102 problem"
        in text
    )
    assert (
        "- cnc101: OEE 50.6 % = availability 75.0 % x performance 75.0 % x quality 90.0 %; "
        "covered 100.0 %, planned 480, downtime 120, setup 0, run 360; "
        "total 300, good 270, scrap 30"
    ) in text
    attachment = next(report.iter_attachments())
    book = load_workbook(io.BytesIO(attachment.get_content()))
    assert book.sheetnames == ["Open tickets", "Recurring", "Tools", "OEE"]
    tickets = {r[0]: r for r in book["Open tickets"].iter_rows(min_row=2, values_only=True)}
    assert tickets["cnc101"][2:9] == ("high", "pending", 0, 5.0, 4, True, "supervisor")
    assert tickets["cnc102"][4:9] == (1, 6.0, 72, False, "manager")
    recurring = list(book["Recurring"].iter_rows(min_row=2, values_only=True))
    assert [r[:4] for r in recurring] == [("cnc103", "spindle", "T7", 3)]
    tools = list(book["Tools"].iter_rows(min_row=2, values_only=True))
    assert tools == [("cnc101", 1, "T1", "Tool 1 on CNC 101 is not reaching tool life")]
    oee = {r[0]: r[10:14] for r in book["OEE"].iter_rows(min_row=2, values_only=True)}
    # cnc101: 2 h down of 8 -> 0.75; 300 x 54 s / 6 h run -> 0.75; 270 / 300 -> 0.9.
    assert oee["cnc101"] == (0.75, 0.75, 0.9, 0.75 * 0.75 * 0.9)
    assert oee["cnc102"] == (None, None, None, None)  # no signals: said so, not invented
    sheet = book["OEE"]
    assert sheet["A1"].font.bold and sheet.freeze_panes == "A2"
    assert [sheet.cell(2, c).number_format for c in (2, 11, 12, 13, 14)] == ["0.0%"] * 5
    assert sheet.column_dimensions["O"].width >= len("no signals from the machine")

    assert len(teams.posts) == 1
    card = teams.posts[0]["attachments"][0]["content"]
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Open tickets"] == "3" and facts["Past SLA"] == "1"


def test_text_from_the_floor_is_text_in_the_xlsx_never_a_formula(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    smtp: tuple[int, Mailbox],
    teams: Webhook,
    redis_client: redis.Redis,
    monkeypatch: Any,
) -> None:
    port, box = smtp
    monkeypatch.setenv("REPSYS_TEST_TEAMS_URL", teams.url)
    cfg = escalation_cfg(runner_config, port, teams)
    harness = make_runner(cfg, clock=lambda: NOW)
    title = '=HYPERLINK("http://evil.example/x","Open")'
    with harness.sessions.begin() as s:
        add_ticket(
            s,
            machine=cfg.machines[0],
            source="operator",
            severity="high",
            title=title,
            description="typed on the tablet",
            now=NOW - timedelta(hours=1),
        )
    submit(harness.sessions, redis_client, cfg, kind="escalation", params={}, requester="s")
    assert harness.burst() == 1
    report = next(m for m in box.messages if m["Subject"].startswith("Escalation report"))
    book = load_workbook(io.BytesIO(next(report.iter_attachments()).get_content()))
    (row,) = book["Open tickets"].iter_rows(min_row=2)
    cell = row[-1]
    assert (cell.value, cell.data_type) == (title, "s")  # openpyxl reads a formula as "f"


def test_a_refused_teams_post_fails_the_report_with_the_reason(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    smtp: tuple[int, Mailbox],
    teams: Webhook,
    redis_client: redis.Redis,
    monkeypatch: Any,
) -> None:
    port, _ = smtp
    monkeypatch.setenv("REPSYS_TEST_TEAMS_URL", teams.url)
    teams.status = 400
    cfg = escalation_cfg(runner_config, port, teams)
    harness = make_runner(cfg, clock=lambda: NOW)
    row = submit(
        harness.sessions, redis_client, cfg, kind="escalation", params={}, requester="scheduler"
    )
    assert harness.burst() == 1
    with harness.sessions() as s:
        done = s.get(ReportRequestRow, row.id)
        assert done is not None
    assert done.state == "failed"
    assert done.error == (
        "step 'escalation_report' failed: delivery failed: Teams webhook refused the card: 400 1"
    )
    assert len(teams.posts) == 1  # a 4xx is not retried


def test_tool_check_sends_only_when_there_is_something_to_say(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    smtp: tuple[int, Mailbox],
    teams: Webhook,
    redis_client: redis.Redis,
    monkeypatch: Any,
) -> None:
    port, box = smtp
    monkeypatch.setenv("REPSYS_TEST_TEAMS_URL", teams.url)
    cfg = escalation_cfg(runner_config, port, teams, teams=False)
    harness = make_runner(cfg, clock=lambda: NOW)
    quiet = submit(
        harness.sessions, redis_client, cfg, kind="tool_check", params={}, requester="scheduler"
    )
    assert harness.burst() == 1
    with harness.sessions.begin() as s:
        s.add(
            episode(
                "cnc120",
                "tool-life",
                "tool_life_short",
                NOW - timedelta(minutes=5),
                subject="T1",
                summary="Tool 1 on CNC 120 is not reaching tool life",
            )
        )
    redis_client.zadd(
        keys.UPCOMING_TOOL_CHANGES, {"cnc101|T3": 10, "cnc102|T9": 90, "cnc103|T2": -20}
    )
    busy = submit(
        harness.sessions,
        redis_client,
        cfg,
        kind="tool_check",
        params={"window_minutes": 15},
        requester="scheduler",
    )
    assert harness.burst() == 1
    with harness.sessions() as s:
        assert {s.get(ReportRequestRow, i).state for i in (quiet.id, busy.id)} == {"completed"}  # type: ignore[union-attr]
    wait_until(lambda: len(box.messages) == 1, timeout=10, what="one tool mail")
    mail = box.messages[0]
    assert mail["Subject"] == "Tooling Issues: 3"
    assert mail.get_content().splitlines() == [
        "Tooling Issue: Tool 1 on CNC 120 is not reaching tool life",
        "Tool change OVERDUE: cnc103 tool T2, 20 min past life",
        "Upcoming tool change: cnc101 tool T3 in 10 min",
    ]
    assert not teams.posts


def test_a_whole_day_is_one_report_over_every_shift_of_it(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    smtp: tuple[int, Mailbox],
    teams: Webhook,
    redis_client: redis.Redis,
    monkeypatch: Any,
) -> None:
    port, box = smtp
    monkeypatch.setenv("REPSYS_TEST_TEAMS_URL", teams.url)
    cfg = escalation_cfg(runner_config, port, teams)
    harness = make_runner(cfg, clock=lambda: NOW)
    seed_plant(cfg, harness.sessions, redis_client)
    row = submit(
        harness.sessions,
        redis_client,
        cfg,
        kind="escalation",
        params={"day": "2024-07-08"},
        requester="sam",
    )
    assert harness.burst() == 1
    with harness.sessions() as s:
        done = s.get(ReportRequestRow, row.id)
        assert done is not None and done.state == "completed", done and done.error
    assert done.result_path and done.result_path.endswith("/Escalation-day-2024-07-08.html")
    text = box.messages[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Every shift starting on the day: 3 x 8 h planned (the default shifts have no breaks).
    assert "planned 1440" in text
