"""The parts the rules worker composes, each at its seam on a real redis-server.

``Checkpoints`` (state + acknowledgement, fenced by the lease; one partition per turn),
``Leases.rebalance`` (a round's heartbeat and renewals) and ``LivePublisher`` (the boards).
The worker's own tests run them together; these pin each one's contract.
"""

from __future__ import annotations

from typing import Any

from core import keys
from core.metrics import new_registry
from core.model import Signal
from rules.actions import Forecast
from rules.checkpoint import PROGRESS_FIELD, Checkpoints, Held
from rules.engine import Engine, Program
from rules.lease import Leases
from rules.live import LiveBoard, LivePublisher
from rules.metrics import RulesMetrics
from rules.state import MachineState
from rules.stream import PartitionStream


def _parts(make_config: Any, redis: Any, worker: str = "w1", **worker_cfg: Any) -> Any:
    cfg = make_config({"rules": {"worker": worker_cfg}} if worker_cfg else None)
    lost: list[int] = []
    stream = PartitionStream(redis, worker)
    checkpoints = Checkpoints(
        stream,
        worker,
        cfg.rules.worker,
        RulesMetrics(new_registry()),
        clock=lambda: 1234.5,
        lost=lost.append,
    )
    return cfg, stream, checkpoints, lost


def _held(cfg: Any, stream: PartitionStream, p: int, redis: Any) -> Held:
    """Partition ``p`` with one entry read (delivered, so pending) and evaluated."""
    stream.ensure_group(p)
    sig = Signal("cnc101", "spindle_load", 50.0, source_ts=1.0, receive_ts=1.0)
    entry_id = redis.xadd(keys.signal_stream(p), sig.to_fields())
    redis.xreadgroup(keys.RULES_GROUP, stream.worker_id, {keys.signal_stream(p): ">"})
    engine = Engine(Program(cfg))
    engine.process(sig)
    held = Held.resumed(p, engine, "")
    held.unacked, held.progress_id = [entry_id], entry_id
    return held


def test_a_checkpoint_writes_state_and_progress_and_acknowledges(make_config, redis_client) -> None:
    cfg, stream, checkpoints, lost = _parts(make_config, redis_client)
    redis_client.set(keys.rules_lease(0), "w1")
    held = _held(cfg, stream, 0, redis_client)

    assert checkpoints.write(held) is True

    state = redis_client.hgetall(keys.rules_state(0))
    assert set(state) == {"cnc101", PROGRESS_FIELD}
    blobs, progress = checkpoints.load(0)
    assert (list(blobs), progress, held.unacked, lost) == (["cnc101"], held.progress_id, [], [])
    assert redis_client.xpending(keys.signal_stream(0), keys.RULES_GROUP)["pending"] == 0
    resumed = Held.resumed(0, held.engine, progress)
    assert resumed.progress == tuple(int(x) for x in progress.split("-"))


def test_a_checkpoint_without_the_lease_writes_nothing_and_reports_it(
    make_config, redis_client
) -> None:
    cfg, stream, checkpoints, lost = _parts(make_config, redis_client)
    redis_client.set(keys.rules_lease(0), "w2")  # taken by another worker
    held = _held(cfg, stream, 0, redis_client)

    assert checkpoints.write(held) is False

    assert lost == [0]
    assert redis_client.exists(keys.rules_state(0)) == 0
    assert held.unacked  # still to acknowledge (by whoever replays them)


def test_due_writes_one_partition_per_turn_and_all_past_max_unacked(
    make_config, redis_client
) -> None:
    cfg, stream, checkpoints, _ = _parts(make_config, redis_client, max_unacked=3)
    held = {}
    for p in (0, 1):
        redis_client.set(keys.rules_lease(p), "w1")
        held[p] = _held(cfg, stream, p, redis_client)
    held[0].checkpoint_due, held[1].checkpoint_due = 20.0, 10.0

    checkpoints.due(held, now=30.0)  # both due: the one waiting longest

    assert (held[0].unacked != [], held[1].unacked) == (True, [])
    assert held[1].checkpoint_due == 30.0 + cfg.rules.worker.checkpoint_interval_s
    held[0].unacked += ["0-1", "0-2"]  # three awaiting acknowledgement: all are written
    held[1].unacked = ["0-3"]
    checkpoints.due(held, now=31.0)
    assert (held[0].unacked, held[1].unacked) == ([], [])


def test_rebalance_reports_a_lost_lease_and_leaves_it_out_of_the_extras(redis_client) -> None:
    leases = Leases(redis_client, "w1", 4, lease_ttl_s=30, worker_ttl_s=30)
    other = Leases(redis_client, "w2", 4, lease_ttl_s=30, worker_ttl_s=30)
    other.heartbeat()
    for p in range(4):
        assert leases.acquire(p)
    redis_client.set(keys.rules_lease(3), "w2")  # w1 paused; w2 took it meanwhile

    lost, extras, target = leases.rebalance([0, 1, 2, 3])

    assert (lost, target) == ([3], 2)
    assert len(extras) == 1 and extras[0] in (0, 1, 2)  # one of the three still held


def test_the_publisher_flushes_on_its_clock_and_writes_forecasts(redis_client) -> None:
    board = LiveBoard(frozenset())
    publisher = LivePublisher(redis_client, board, lambda: 5000.0)
    sig = Signal("cnc101", "program", "O1000", source_ts=1.0, receive_ts=1.0)
    publisher.note(sig)
    engine_machines = {"cnc101": MachineState("cnc101")}

    assert publisher.flush([engine_machines], force=True) == 1

    live = redis_client.hgetall(keys.machine_live("cnc101"))
    assert (live["program"], live["updated_at"]) == ("O1000", "5000.0")
    publisher.forecasts([Forecast("cnc101", "T1", 12, 4990.0)])
    assert redis_client.zscore(keys.UPCOMING_TOOL_CHANGES, "cnc101|T1") == 12
