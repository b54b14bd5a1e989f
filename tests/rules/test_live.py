"""The worker publishes each machine's live state for the boards, on a real redis-server.

After a batch, ``keys.machine_live(machine)`` holds the board state mapped from the run
state, when it began, when it was written and the latest subject-less signal values, with
a TTL; the machines board (``web.live``) reads it back as the state it shows.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from core import keys
from core.model import Quality, Signal
from rules.live import FLUSH_INTERVAL_S, LIVE_TTL_S, REFRESH_S, LiveBoard, board_state
from rules.state import MachineState
from tests.rules.helpers import make_worker, push
from web.live import machine_statuses

P = 4
T0 = float(int(time.time()) - 60)


def sig(name: str, value: Any, t: float, machine: str = "cnc103", **kw: Any) -> Signal:
    return Signal(machine, name, value, source_ts=t, receive_ts=t, **kw)


def live_cfg(make_config: Any) -> Any:
    section = {
        "machines": {"cnc103": {"tools": {"T1": {"life": 348}}}},
        "rules": [
            {"name": "no_data", "type": "no_data", "timeout_s": 300},
            {"name": "tool_life_short", "type": "tool_life_short"},
        ],
    }
    return make_config({"streams": {"partitions": P}, "rules": section})


def test_board_state_maps_run_states() -> None:
    assert [board_state(s) for s in ("executing", "idle", "stopped", "ready")] == [
        "running", "idle", "idle", "idle",
    ]  # fmt: skip
    assert [board_state(s) for s in ("interrupted", "alarm", "FAULT")] == ["down"] * 3
    assert (board_state(""), board_state("setup_wait")) == ("unknown", "setup_wait")


def test_batch_writes_state_and_latest_values_then_down_with_new_since(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = live_cfg(make_config)
    clock = [T0 + 10]
    worker = make_worker(cfg, redis_client, sqlite_engine, clock=lambda: clock[0])
    push(
        redis_client,
        [
            sig("run_state", "executing", T0),
            sig("program", "O1001", T0 + 1),
            sig("part_count", 5, T0 + 2),
            sig("spindle_load", 40.0, T0 + 3),
            sig("spindle_load", 42.5, T0 + 4),
            sig("tool_life", 100, T0 + 5, subject="T1"),
            sig("run_state", "stopped", T0 + 2, machine="cnc101"),
        ],
        P,
    )
    worker.once(now=T0 + 10)

    live = redis_client.hgetall(keys.machine_live("cnc103"))
    assert live == {
        "state": "running",
        "state_since": repr(T0),
        "updated_at": repr(T0 + 10),
        "run_state": "executing",
        "program": "O1001",
        "part_count": "5",
        "spindle_load": "42.5",  # the latest of the batch; tool_life:T1 is not a tile value
    }
    assert 0 < redis_client.ttl(keys.machine_live("cnc103")) <= LIVE_TTL_S
    other = redis_client.hgetall(keys.machine_live("cnc101"))
    assert (other["state"], other["state_since"]) == ("idle", repr(T0 + 2))

    clock[0] = T0 + 30
    push(redis_client, [sig("run_state", "interrupted", T0 + 20), sig("part_count", 6, T0 + 21)], P)
    worker.once(now=T0 + 30)
    live = redis_client.hgetall(keys.machine_live("cnc103"))
    assert (live["state"], live["state_since"], live["updated_at"]) == (
        "down", repr(T0 + 20), repr(T0 + 30),
    )  # fmt: skip
    assert (live["run_state"], live["part_count"], live["program"]) == ("interrupted", "6", "O1001")

    # What the machines board shows from it.
    statuses = machine_statuses(
        redis_client,
        [m for m in cfg.machines if m.id == "cnc103"],
        now=datetime.fromtimestamp(T0 + 40, UTC),
        no_data_after_s=120,
    )
    assert [(s.state, s.since) for s in statuses] == [
        ("down", datetime.fromtimestamp(T0 + 20, UTC))
    ]


def test_a_source_reporting_no_data_shows_no_data(make_config, redis_client, sqlite_engine) -> None:
    cfg = live_cfg(make_config)
    worker = make_worker(cfg, redis_client, sqlite_engine, clock=lambda: T0 + 10)
    push(
        redis_client,
        [
            sig("run_state", "executing", T0),
            sig("spindle_load", None, T0 + 5, quality=Quality.NO_DATA),
        ],
        P,
    )
    worker.once(now=T0 + 10)
    live = redis_client.hgetall(keys.machine_live("cnc103"))
    # The last good run state stays a value, but the board state is no_data from the
    # bad sample's source time; a bad sample's missing value overwrites nothing.
    assert (live["state"], live["state_since"]) == ("no_data", repr(T0 + 5))
    assert (live["run_state"], "spindle_load" in live) == ("executing", False)


def test_nothing_is_written_for_an_unconfigured_machine(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = live_cfg(make_config)
    worker = make_worker(cfg, redis_client, sqlite_engine)
    push(redis_client, [sig("run_state", "executing", T0, machine="nobody")], P)
    assert worker.once(now=T0 + 10).entries == 1
    assert redis_client.exists(keys.machine_live("nobody")) == 0


def test_an_unchanged_state_is_rewritten_at_most_every_refresh_s(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = live_cfg(make_config)
    clock = [T0 + 10]
    worker = make_worker(cfg, redis_client, sqlite_engine, clock=lambda: clock[0])
    key = keys.machine_live("cnc103")
    push(redis_client, [sig("run_state", "executing", T0), sig("part_count", 5, T0 + 1)], P)
    worker.once(now=T0 + 10)

    clock[0] = T0 + 10 + REFRESH_S / 2  # still running, written moments ago: not yet
    push(redis_client, [sig("part_count", 6, T0 + 11)], P)
    worker.once(now=clock[0])
    assert redis_client.hmget(key, "part_count", "updated_at") == ["5", repr(T0 + 10)]

    clock[0] = T0 + 10 + REFRESH_S  # due: the value kept from the batch before comes too
    push(redis_client, [sig("spindle_load", 30, T0 + 12)], P)
    worker.once(now=clock[0])
    assert redis_client.hmget(key, "part_count", "spindle_load", "state_since") == [
        "6", "30", repr(T0),
    ]  # fmt: skip
    assert redis_client.hget(key, "updated_at") == repr(clock[0])


def test_flushes_come_at_most_every_interval_and_a_forced_one_at_once(redis_client) -> None:
    board = LiveBoard(frozenset(), interval_s=FLUSH_INTERVAL_S)
    m = MachineState("cnc103")
    m.run_state = "executing"
    machines = {"cnc103": m}
    key = keys.machine_live("cnc103")

    board.note(sig("part_count", 5, T0))
    assert board.flush(redis_client, [machines], T0 + 10) == 1
    m.run_state = "interrupted"  # a change of state, written at the next flush
    board.note(sig("part_count", 6, T0 + 1))
    assert board.flush(redis_client, [machines], T0 + 10 + FLUSH_INTERVAL_S / 2) == 0
    assert redis_client.hmget(key, "state", "part_count") == ["running", "5"]
    assert board.flush(redis_client, [machines], T0 + 10 + FLUSH_INTERVAL_S) == 1
    assert redis_client.hmget(key, "state", "part_count") == ["down", "6"]

    m.run_state = "executing"
    board.note(sig("part_count", 7, T0 + 2))
    at = T0 + 10 + FLUSH_INTERVAL_S * 1.5  # within the interval, but forced
    assert board.flush(redis_client, [machines], at, force=True) == 1
    assert redis_client.hmget(key, "state", "part_count") == ["running", "7"]


def test_the_machine_tile_shows_the_fastest_cycle_learned_start_to_start_on_one_pallet(
    make_config, redis_client, sqlite_engine
) -> None:
    section = {
        "machines": {"cnc102": {"cycle_source": "machining_event",
                                "tools": {"T1": {"pallets": 2}, "T2": {"pallets": 2}}}},
        "rules": [{"name": "counter_jump", "type": "counter_jump"}],
    }  # fmt: skip
    cfg = make_config({"streams": {"partitions": P}, "rules": section})
    worker = make_worker(cfg, redis_client, sqlite_engine, clock=lambda: T0 + 300)

    def event(tool: str, pallet: str, counter: int, start: float) -> Signal:
        # Each tool its own 10 s inside the pallet's cut.
        attrs = {"pallet": pallet, "counter": str(counter), "start": repr(start)}
        return sig("machining_event", counter, start + 10, "cnc102", subject=tool, attrs=attrs)

    # Cuts of 30 s on alternating pallets, 2 s to load: pallet 1 starts again 64 s later
    # (each tool's run is 10 s, a cut 32 s: neither is the plants' cycle time).
    cuts = [(T0 + n * 32, "1" if n % 2 == 0 else "2", 10 + n) for n in range(4)]
    signals = [sig("run_state", "executing", T0 - 1, "cnc102")]
    for start, pallet, counter in cuts:
        signals += [event("T1", pallet, counter, start), event("T2", pallet, counter, start + 15)]
    push(redis_client, signals, P)
    worker.once(now=T0 + 300)

    live = redis_client.hgetall(keys.machine_live("cnc102"))
    assert live["fastest_cycle_time"] == "64 s"
    [status] = machine_statuses(
        redis_client,
        [m for m in cfg.machines if m.id == "cnc102"],
        now=datetime.fromtimestamp(T0 + 300, UTC),
        no_data_after_s=600,
    )
    assert ("fastest cycle time", "64 s") in status.labelled_signals


def test_a_machine_stopped_with_an_alarm_standing_is_down_until_the_alarm_clears(
    make_config, redis_client, sqlite_engine
) -> None:
    # The simulated plant's breakdown (and a FANUC control): run state "stopped", then an
    # alarm; the board said "idle" through the whole breakdown.
    cfg = live_cfg(make_config)
    clock = [T0 + 10]
    worker = make_worker(cfg, redis_client, sqlite_engine, clock=lambda: clock[0])
    alarm = {"text": "Spindle drive fault", "severity": "high"}
    push(
        redis_client,
        [
            sig("run_state", "executing", T0),
            sig("run_state", "stopped", T0 + 5),
            sig("alarm", 1001, T0 + 5, attrs={**alarm, "active": "true"}),
        ],
        P,
    )
    worker.once(now=T0 + 10)
    live = redis_client.hgetall(keys.machine_live("cnc103"))
    assert (live["state"], live["state_since"]) == ("down", repr(T0 + 5))

    # Another alarm's clearing leaves it down; its own clearing leaves a stopped machine.
    clock[0] = T0 + 30
    push(redis_client, [sig("alarm", 2002, T0 + 20, attrs={"active": "false"})], P)
    worker.once(now=T0 + 30)
    assert redis_client.hget(keys.machine_live("cnc103"), "state") == "down"
    clock[0] = T0 + 50
    push(redis_client, [sig("alarm", 1001, T0 + 40, attrs={"active": "false"})], P)
    worker.once(now=T0 + 50)
    assert redis_client.hget(keys.machine_live("cnc103"), "state") == "idle"
    clock[0] = T0 + 70
    push(redis_client, [sig("run_state", "executing", T0 + 60)], P)
    worker.once(now=T0 + 70)
    assert redis_client.hget(keys.machine_live("cnc103"), "state") == "running"


def test_an_alarm_while_running_is_not_down() -> None:
    board = LiveBoard(frozenset())
    m = MachineState("cnc103")
    m.run_state, m.last_alarm = "executing", ["3001", "Coolant low", T0, True]
    assert board._state(m)[0] == "running"
    m.run_state = "stopped"
    assert board._state(m)[0] == "down"
    m.last_alarm = ["3001", "Coolant low", T0]  # a checkpoint of before: nothing assumed
    assert board._state(m)[0] == "idle"
