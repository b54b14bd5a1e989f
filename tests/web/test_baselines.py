"""The machines board shows each program's cycle-time baseline from the rules checkpoints.

The state is made by the real rules engine from cycles and written where the rules worker
checkpoints it (``keys.rules_state``); the board must show its size and spread.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core import keys
from core.config import parse_config
from core.model import Signal
from rules.engine import Engine, Program
from tests.conftest import TEST_MACHINES

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
RULES = {
    "defaults": {"cycle_source": "cycle_time"},
    # sigma as estimated: the figures below are worked out from the cycles themselves.
    "rules": [
        {"name": "cycle_time", "type": "cycle_time", "warmup_cycles": 11, "sigma_confidence": None}
    ],
}


def _tile(page: str, machine: str) -> str:
    start = page.index(f'id="machine-{machine}"')
    return page[start : page.index("</article>", start)]


def test_machines_board_shows_baselines_and_phase_one_progress(start_web, redis_client) -> None:
    web = start_web({"rules": RULES}, clock=lambda: NOW)
    engine = Engine(Program(parse_config({"machines": TEST_MACHINES, "rules": RULES})))
    t = NOW.timestamp() - 3600
    engine.process(Signal("cnc101", "program", "O1000", source_ts=t, receive_ts=t))
    values = [600.0] + [59.436, 60.564] * 5  # a setup cycle, then 10 cycles: mean 60, sigma 1
    for i, v in enumerate(values, 1):
        engine.process(Signal("cnc101", "cycle_time", v, source_ts=t + i, receive_ts=t + i))
    engine.process(Signal("cnc102", "program", "O2000", source_ts=t, receive_ts=t))
    for i in range(3):
        engine.process(Signal("cnc102", "cycle_time", 40.0, source_ts=t + i, receive_ts=t + i))
    for machine, blob in engine.checkpoint().items():
        state = keys.rules_state(keys.partition_of(machine, web.cfg.streams.partitions))
        redis_client.hset(state, machine, blob)
    redis_client.hset(keys.rules_state(keys.partition_of("cnc103", 4)), "cnc103", "{not json")

    page = web.login("sam").get("/boards/machines").text

    one, two, three = (_tile(page, m) for m in ("cnc101", "cnc102", "cnc103"))
    assert "cycle O1000: 60 ± 1 s (10 cycles, 1 screened out)" in one
    assert "cycle O2000: learning: 3 of 11 cycles" in two
    assert "cycle " not in three  # an unreadable state shows nothing, not an error page
