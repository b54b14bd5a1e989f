"""Exactly once, under fire: faults of every kind, two senders on PostgreSQL, kill -9.

The simulated Plex does not deduplicate by reference, so a ticket sent twice would show
as two tickets there: the assertions count tickets in the simulator, per reference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import func, select, update

from core.config.sim_plex import FAULT_KINDS
from core.db import session_factory
from core.db.schema import Ticket, utcnow
from core.metrics import new_registry
from plex.metrics import PlexMetrics
from plex.sender import Sender
from repsys.servers import wait_until
from tests.conftest import REPO
from tests.plex.conftest import SIM_PASSWORD_ENV, add_tickets, build_actions

pytestmark = pytest.mark.slow


def open_rows(sessions) -> int:
    with sessions() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(Ticket)
                .where(Ticket.state.in_(["pending", "sending"]))
            )
            or 0
        )


def run_senders(senders: list[Sender], sessions, *, deadline_s: float) -> None:
    """Run every sender in its own thread until no row is pending or sending."""
    done = threading.Event()
    errors: list[BaseException] = []

    def loop(sender: Sender) -> None:
        try:
            while not done.is_set():
                if sender.run_once() == 0:
                    done.wait(0.02)  # idle poll of a worker loop, bounded by the deadline
        except BaseException as exc:
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in senders]
    for t in threads:
        t.start()
    try:
        wait_until(
            lambda: open_rows(sessions) == 0 or bool(errors),
            timeout=deadline_s,
            what="outbox drained",
            interval=0.1,
        )
    finally:
        done.set()
        for t in threads:
            t.join(10)
    assert not errors, errors


def assert_once_each(sim, sessions, refs: set[str]) -> dict[str, Ticket]:
    """No reference is in the simulator twice; each filed row is there with its number.

    A dead row may be in the simulator too: created by a call whose answer was lost,
    then dead-lettered when the lookup itself was rejected. Its replay finds it.
    """
    counts = Counter(t.external_ref for t in sim.tickets())
    assert [ref for ref, n in counts.items() if n > 1] == []
    with sessions() as s:
        rows = {t.external_ref: t for t in s.scalars(select(Ticket))}
    filed = {ref: t for ref, t in rows.items() if t.state == "filed"}
    assert set(filed) <= set(counts)
    assert {rows[ref].state for ref in set(counts) - set(filed)} <= {"dead"}
    numbers = {t.external_ref: t.number for t in sim.tickets()}
    assert all(filed[ref].plex_number == numbers[ref] for ref in filed)
    assert set(rows) == refs
    return rows


def test_1000_tickets_with_30_percent_faults_three_senders_on_postgresql(
    plex_config, make_sim, pg_engine, redis_client
):
    each = 0.30 / len(FAULT_KINDS)
    sim = make_sim(
        faults={
            **dict.fromkeys(FAULT_KINDS, each),
            "latency_s": 0.05,
            "hang_s": 1.0,
            "commit_delay_s": 0.5,
            "retry_after_s": 0,
            "seed": 7,
        }
    )
    cfg = plex_config(
        {
            "endpoint": sim.url,
            "operation_timeout_s": 0.3,
            "connect_timeout_s": 1.0,
            # The lookup after a timeout comes after any late commit (0.3 + 0.5 > 0.5).
            "sender": {"ambiguous_delay_s": 0.5},
        },
        database={"url": pg_engine.url.render_as_string(hide_password=False)},
    )
    sessions = session_factory(pg_engine)
    ids = add_tickets(sessions, cfg, 1000, prefix="RS-BIG")
    refs = {f"RS-BIG{i:05d}" for i in range(1000)}
    senders = [
        Sender(
            cfg,
            sessions,
            build_actions(cfg, redis_client, PlexMetrics(new_registry())),
            name=f"sender-{n}",
        )
        for n in range(3)
    ]
    run_senders(senders, sessions, deadline_s=240)

    # Every fault kind was injected, timeout-after-commit and late commits included.
    assert set(sim.faults.counts) == set(FAULT_KINDS), sim.faults.counts
    assert sim.faults.counts["timeout_after_commit"] >= 10
    assert sim.faults.counts["commit_late"] >= 10
    rows = assert_once_each(sim, sessions, refs)
    states = Counter(t.state for t in rows.values())
    assert set(states) <= {"filed", "dead"}
    dead = [t for t in rows.values() if t.state == "dead"]
    assert dead, "error_body and xxe faults dead-letter tickets"
    assert {t.last_error_reason for t in dead} <= {"data_source_error", "unsafe_xml"}
    assert all(t.last_error for t in dead)
    assert len(rows) == len(ids)

    # Operations staff replay the dead letters once Plex is healthy: still once each.
    sim.faults.reset(sim.cfg.faults.model_copy(update=dict.fromkeys(FAULT_KINDS, 0.0)))
    with sessions() as s, s.begin():
        s.execute(
            update(Ticket)
            .where(Ticket.state == "dead")
            .values(state="pending", attempts=0, next_attempt_at=utcnow())
        )
    run_senders(senders, sessions, deadline_s=120)
    rows = assert_once_each(sim, sessions, refs)
    assert {t.state for t in rows.values()} == {"filed"}
    assert len(sim.tickets()) == 1000


def write_config(tmp_path, cfg, database_url: str) -> str:
    data = {
        "machines": [m.model_dump() for m in cfg.machines],
        "redis": {"url": cfg.redis.url},
        "database": {"url": database_url},
        "logging": {"format": "json", "level": "INFO"},
        "plex": {
            "endpoint": cfg.plex.endpoint,
            "username": cfg.plex.username,
            "password": {"env": SIM_PASSWORD_ENV},
            "operation_timeout_s": 2.0,
            "master_data_check": "fatal",
            "rate_limit": {"per_minute": 60000, "burst": 100, "max_wait_s": 2},
            "sender": {"batch_size": 10, "claim_ttl_s": 15, "poll_interval_s": 0.1},
        },
    }
    path = tmp_path / "sender.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_kill_9_mid_send_causes_no_duplicate(
    plex_config, make_sim, pg_engine, redis_client, tmp_path, sim_password
):
    # Every call is slow, so the kill lands while requests are in flight.
    sim = make_sim(faults={"latency": 1.0, "latency_s": 0.15})
    cfg = plex_config({"endpoint": sim.url})
    sessions = session_factory(pg_engine)
    add_tickets(sessions, cfg, 40, prefix="RS-K9")
    refs = {f"RS-K9{i:05d}" for i in range(40)}
    config = write_config(tmp_path, cfg, pg_engine.url.render_as_string(hide_password=False))
    proc = subprocess.Popen(
        [sys.executable, "-m", "repsys", "-c", config, "--http-port", "0", "plex-sender"],
        cwd=REPO,
        env={**os.environ, SIM_PASSWORD_ENV: sim_password},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: len(sim.tickets()) >= 5 and sim.in_flight() > 0,
            timeout=60,
            what="sender mid-send",
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Requests the dead sender had sent still finish inside Plex; wait for them.
    wait_until(lambda: sim.in_flight() == 0, timeout=10, what="in-flight requests done")
    created_by_dead = len(sim.tickets())
    with sessions() as s:
        stuck = s.scalar(select(func.count()).select_from(Ticket).where(Ticket.state == "sending"))
    assert stuck, "the kill left claimed rows behind"

    survivor = Sender(cfg, sessions, build_actions(cfg, redis_client), name="survivor")
    # The dead sender's claims expire after claim_ttl_s (15 s): look from then on.
    after_ttl = utcnow() + timedelta(seconds=20)
    for _ in range(20):
        if survivor.run_once(now=after_ttl) == 0:
            break
    rows = assert_once_each(sim, sessions, refs)
    assert {t.state for t in rows.values()} == {"filed"}
    assert len(sim.tickets()) == 40
    assert created_by_dead < 40


def test_sender_process_stops_on_sigterm_and_once_mode(
    plex_config, sim, pg_engine, redis_client, tmp_path, sim_password
):
    cfg = plex_config()
    sessions = session_factory(pg_engine)
    add_tickets(sessions, cfg, 5, prefix="RS-ONCE")
    config = write_config(tmp_path, cfg, pg_engine.url.render_as_string(hide_password=False))
    env = {**os.environ, SIM_PASSWORD_ENV: sim_password}
    once = subprocess.run(
        [sys.executable, "-m", "repsys", "-c", config, "plex-sender", "--once"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert once.returncode == 0, once.stderr
    assert once.stdout.strip() == "processed 5 outbox rows; checked the status of 5 tickets"
    assert len(sim.tickets()) == 5
    proc = subprocess.Popen(
        [sys.executable, "-m", "repsys", "-c", config, "--http-port", "0", "plex-sender"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    add_tickets(sessions, cfg, 2, prefix="RS-LOOP")
    wait_until(lambda: len(sim.tickets()) == 7, timeout=30, what="loop filed new tickets")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - started < 15
    assert proc.stderr is not None
    assert b"plex_sender_stopped" in proc.stderr.read()
