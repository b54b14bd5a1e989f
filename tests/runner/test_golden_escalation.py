"""Golden escalation reports: signals, episodes and tickets in, every figure out.

Each folder of ``escalation_cases/`` holds ``case.json`` (plant zone, machines,
``runner.escalation`` settings, the request and the clock), ``signals.jsonl`` (written to
the partition streams with the entry id of their time ``at``), ``episodes.jsonl``,
``tickets.jsonl`` and ``expected.json``: the report's figures computed by hand (the working
is in each case's ``README.md``). The report runs through a real runner on a real Redis,
on SQLite and on PostgreSQL, and its figures file must equal ``expected.json`` exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.db import session_factory
from core.db.schema import Episode, ReportRequestRow
from core.model import Signal
from core.outbox import add_ticket
from runner.requests import submit
from tests.runner.conftest import Harness

CASES = Path(__file__).with_name("escalation_cases")


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _seed(
    folder: Path, cfg: RepsysConfig, sessions: sessionmaker[Session], client: redis.Redis
) -> None:
    machines = {m.id: m for m in cfg.machines}
    with sessions.begin() as s:
        for n, ep in enumerate(_lines(folder / "episodes.jsonl"), start=1):
            start = datetime.fromisoformat(ep["start"])
            end = datetime.fromisoformat(ep["end"]) if ep.get("end") else None
            s.add(
                Episode(
                    fingerprint=f"{ep['machine']}|{ep['rule']}|{ep.get('subject', '')}",
                    occurrence=n,
                    machine_id=ep["machine"],
                    rule=ep["rule"],
                    rule_type=ep["rule_type"],
                    subject=ep.get("subject", ""),
                    summary=ep.get("summary", ""),
                    evidence={},
                    started_at=start,
                    last_seen_at=end or start,
                    resolved_at=end,
                    state="resolved" if end else "firing",
                )
            )
        for t in _lines(folder / "tickets.jsonl"):
            ticket = add_ticket(
                s,
                machine=machines[t["machine"]],
                source="operator",
                severity=t["severity"],
                title=t["title"],
                description="golden case",
                now=datetime.fromisoformat(t["created"]),
            )
            ticket.state = t.get("state", "pending")
    pipe: Any = client.pipeline()
    seq: dict[tuple[str, int], int] = {}
    for sig in sorted(_lines(folder / "signals.jsonl"), key=lambda x: x["at"]):
        at = datetime.fromisoformat(sig["at"])
        ms = int(at.timestamp() * 1000)
        stream = keys.signal_stream(keys.partition_of(sig["m"], cfg.streams.partitions))
        n = seq[stream, ms] = seq.get((stream, ms), -1) + 1
        fields = Signal(
            sig["m"], sig["n"], sig["v"], source_ts=at.timestamp(), receive_ts=at.timestamp()
        ).to_fields()
        pipe.xadd(stream, fields, id=f"{ms}-{n}")
    pipe.execute()


def _case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if (p / "case.json").exists())


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
@pytest.mark.parametrize("case", _case_names())
def test_golden_escalation_report(
    case: str,
    db: str,
    request: pytest.FixtureRequest,
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    redis_client: redis.Redis,
) -> None:
    folder = CASES / case
    spec = json.loads((folder / "case.json").read_text())
    sections: dict[str, Any] = {
        "plant": {"name": spec.get("plant", "Plant"), "timezone": spec["timezone"]},
        "machines": spec["machines"],
        "rules": spec.get("rules", {}),
    }
    db_sessions: sessionmaker[Session] | None = None
    if db == "postgresql":
        sections["database"] = {"url": request.getfixturevalue("pg_url")}
        db_sessions = session_factory(request.getfixturevalue("pg_engine"))
    cfg = runner_config(runner={"escalation": spec["escalation"]}, **sections)
    now = datetime.fromisoformat(spec["now"])
    harness = make_runner(cfg, db=db_sessions, clock=lambda: now)
    _seed(folder, cfg, harness.sessions, redis_client)
    row = submit(
        harness.sessions,
        redis_client,
        cfg,
        kind="escalation",
        params=spec["request"],
        requester="golden",
    )
    assert harness.burst() == 1
    with harness.sessions() as s:
        done = s.get(ReportRequestRow, row.id)
    assert done is not None and done.state == "completed", done and done.error
    assert done.result_path is not None
    got = json.loads(Path(done.result_path).with_suffix(".json").read_text())
    expected = json.loads((folder / "expected.json").read_text())
    assert got == expected
