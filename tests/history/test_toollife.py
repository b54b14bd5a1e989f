"""The tool-life history report against a plain reading of the tracker's rule.

Reference (DOMAIN.md, the plants' ``InsToolLifeHistory``): per machine and tool, in
stream order, a counter reading below the previous one is a tool change, and the run's
quantity is the previous reading; the job is the machine's last ``program`` signal at or
before the change; the standard life is the configured one.
"""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from core.config import RepsysConfig
from core.model import Signal
from history.toollife import HEADER, tool_runs, write_xlsx
from tests.history.test_writer import P, writer_for
from tests.rules.helpers import push

MACHINES = ("cnc101", "cnc102")
TOOLS = ("T1", "T2")
LIFE = {("cnc101", "T1"): 348, ("cnc102", "T2"): 798}


@st.composite
def plant(draw: Any) -> list[Signal]:
    out: list[Signal] = []
    t = 1_764_000_000.0
    counters = {(m, tl): draw(st.integers(0, 50)) for m in MACHINES for tl in TOOLS}
    for _ in range(draw(st.integers(1, 120))):
        t += draw(st.integers(1, 30))
        machine = draw(st.sampled_from(MACHINES))
        if draw(st.integers(0, 9)) == 0:
            job = draw(st.sampled_from(["O1000", "O2000", "O3000"]))
            out.append(Signal(machine, "program", job, source_ts=t, receive_ts=t))
            continue
        tool = draw(st.sampled_from(TOOLS))
        if draw(st.integers(0, 7)) == 0:
            counters[machine, tool] = draw(st.sampled_from([0, 1, 2]))  # changed
        else:
            counters[machine, tool] += draw(st.integers(1, 40))
        name = draw(st.sampled_from(["tool_life", "machining_event"]))
        out.append(Signal(machine, name, counters[machine, tool], source_ts=t, receive_ts=t,
                          subject=tool))  # fmt: skip
    return out


def reference(signals: list[Signal]) -> list[tuple[str, str, str, float, int, int | None]]:
    last: dict[tuple[str, str], int] = {}
    programs: dict[str, list[tuple[float, str]]] = {}
    out = []
    for s in signals:
        if s.name == "program":
            programs.setdefault(s.machine, []).append((s.source_ts, str(s.value)))
            continue
        key = (s.machine, s.subject)
        value = int(s.value)  # type: ignore[arg-type]
        if key in last and value < last[key]:
            before = [j for ts, j in programs.get(s.machine, []) if ts <= s.source_ts]
            job = before[-1] if before else ""
            out.append((s.machine, s.subject, job, s.source_ts, last[key], LIFE.get(key)))
        last[key] = value
    return sorted(out, key=lambda r: (r[0], r[1], r[3]))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(signals=plant())
def test_tool_runs_match_the_reference(
    signals: list[Signal], make_config: Any, redis_url: str, redis_client: Any
) -> None:
    redis_client.flushall()
    with tempfile.TemporaryDirectory() as tmp:
        cfg: RepsysConfig = make_config(
            {
                "streams": {"partitions": P},
                "storage": {"type": "local", "root": tmp},
                "rules": {
                    "machines": {
                        m: {"tools": {tl: {"life": life}}} for (m, tl), life in LIFE.items()
                    }
                },
            }
        )
        push(redis_client, signals, P)
        writer_for(cfg, redis_url).drain()
        today = date.today()
        runs = tool_runs(cfg, today - timedelta(days=1), today + timedelta(days=1))
        got = [(r.machine, r.tool, r.job, r.changed_at.timestamp(), r.quantity, r.life)
               for r in runs]  # fmt: skip
        assert got == reference(signals)
        if runs:
            path = Path(tmp) / "tool-life.xlsx"
            write_xlsx(path, runs, "America/Chicago")
            sheet = load_workbook(path).active
            assert sheet is not None
            rows = list(sheet.iter_rows(values_only=True))
            assert rows[0] == HEADER and len(rows) == len(runs) + 1
            first = runs[0]
            local = first.changed_at.astimezone(ZoneInfo("America/Chicago"))
            assert rows[1][3] == local.replace(tzinfo=None)  # plant time, as the plants read it
            assert rows[1][4:6] == (first.quantity, first.life)
