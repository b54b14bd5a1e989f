"""The real processes on Redis Sentinel and Redis Cluster: signals in, tickets out.

``repsys collector``, ``repsys rules`` and ``repsys plex-sender`` run as processes on one
config (tests/deploy/pipeline.py). Each MQTT message over the threshold must become one
episode and one ticket filed in the simulated Plex:

* across a Sentinel failover while messages keep coming: the processes follow the
  sentinels to the new master by themselves, stay up, and every message ends as exactly
  one ticket, none lost: the collector confirms each batch with WAIT on the group's
  replicas (``collector.sink.wait_replicas``) before it acks the broker, so what the old
  master takes between the promotion and its demotion (and then discards) is written
  again to the new master; test_sentinel.py fails masters over by a crash too, at the
  client level;
* on a three-master Redis Cluster, with partitions spread over every master.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from core import keys
from core.redis import connect_sync
from repsys.servers import wait_until
from runner.queue import ReportQueue
from tests.deploy.pipeline import Pipeline
from tests.deploy.topologies import RedisCluster, SentinelGroup

pytestmark = pytest.mark.slow
#: The pipeline's config (tests/deploy/pipeline.py) has four partitions.
PARTITIONS = 4


def expected(n: int) -> set[str]:
    return {f"P{i:05d}" for i in range(n)}


def assert_exactly_one_ticket_each(pipeline: Pipeline, n: int) -> None:
    pipeline.wait_for_tickets(n, timeout=120)
    assert pipeline.episode_subjects() == expected(n)
    assert pipeline.tickets_by_state() == {"filed": n}
    refs = Counter(t.external_ref for t in pipeline.plex.tickets())
    assert len(refs) == n and max(refs.values()) == 1


class Feeder:
    """Publishes a batch of messages every ``interval`` seconds until stopped."""

    def __init__(self, pipeline: Pipeline, start: int, batch: int = 5, interval: float = 0.1):
        self.pipeline = pipeline
        self.next = start
        self.batch = batch
        self.interval = interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self.pipeline.publish(range(self.next, self.next + self.batch))
            self.next += self.batch
            self.stop_event.wait(self.interval)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(30)


class WaitingPipeline(Pipeline):
    """The pipeline with the collector confirming each batch on ``replicas`` replicas."""

    def __init__(self, *args: Any, replicas: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replicas = replicas

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        # Below the group's 1 s socket timeout: WAIT blocks the read of its reply.
        cfg["collector"]["sink"].update(wait_replicas=self.replicas, wait_timeout_ms=300)
        return cfg


def test_tickets_filed_across_a_sentinel_failover(
    sentinel_group: SentinelGroup, pg_url: str, mqtt_port: int, tmp_path: Path
) -> None:
    pipeline = WaitingPipeline(
        tmp_path,
        sentinel_group.config(),
        pg_url,
        mqtt_port,
        replicas=len(sentinel_group.replicas),
    )
    try:
        pipeline.start()
        pipeline.publish(range(50))
        pipeline.wait_for_tickets(50, timeout=60)

        with Feeder(pipeline, start=50) as feeder:
            first = sentinel_group.master_port()
            sentinel_group.failover()
            # The old master takes writes until a sentinel demotes it (its INFO period,
            # up to 10 s); then every process must move to the new master and go on.
            wait_until(lambda: sentinel_group.role(first) == "slave", timeout=30, what="demotion")
            mark = feeder.next
            wait_until(lambda: feeder.next >= mark + 150, timeout=60, what="messages after")
        total = feeder.next
        assert sentinel_group.master_port() != first
        pipeline.alive()
        # Every message published before, during and after the failover ends as exactly
        # one ticket: nothing the collector acknowledged to the broker was lost.
        wait_until(
            lambda: pipeline.episode_subjects() >= expected(total) and settled(pipeline),
            timeout=120,
            what="a ticket for every signal published across the failover",
            interval=1.0,
        )
        assert pipeline.episode_subjects() == expected(total)
        assert pipeline.tickets_by_state() == {"filed": total}
        refs = Counter(t.external_ref for t in pipeline.plex.tickets())
        assert len(refs) == total and max(refs.values()) == 1
        pipeline.alive()
    finally:
        pipeline.stop()


def settled(pipeline: Pipeline) -> bool:
    """Every episode has its ticket filed (nothing left in the outbox)."""
    return pipeline.tickets_by_state() == {"filed": len(pipeline.episode_subjects())}


def test_collector_and_plex_sender_on_a_redis_cluster(
    redis_cluster: RedisCluster, pg_url: str, mqtt_port: int, tmp_path: Path
) -> None:
    """Signals reach every partition on the cluster's masters; tickets are filed through
    the rate limit shared in Redis (one Lua script over two keys of one slot)."""
    pipeline = Pipeline(
        tmp_path, redis_cluster.config(), pg_url, mqtt_port, processes=("collector", "plex-sender")
    )
    client = connect_sync(redis_cluster.config())
    streams = [keys.signal_stream(p) for p in range(PARTITIONS)]
    try:
        client.delete(*streams)
        pipeline.start()
        pipeline.publish(range(300))
        wait_until(lambda: sum(client.xlen(s) for s in streams) >= 300, timeout=60, what="signals")
        assert sum(client.xlen(s) for s in streams) == 300
        nodes = {
            redis_cluster.node_of_slot(key_slot(s.encode())) for s in streams if client.xlen(s)
        }
        assert len(nodes) > 1
        pipeline.add_operator_tickets(50)
        pipeline.wait_for_tickets(50, timeout=60)
        assert pipeline.tickets_by_state() == {"filed": 50}
        assert len({t.external_ref for t in pipeline.plex.tickets()}) == 50
        pipeline.alive()
    finally:
        client.close()
        pipeline.stop()


def test_pipeline_on_a_redis_cluster(
    redis_cluster: RedisCluster, pg_url: str, mqtt_port: int, tmp_path: Path
) -> None:
    pipeline = Pipeline(tmp_path, redis_cluster.config(), pg_url, mqtt_port)
    try:
        pipeline.start()
        pipeline.publish(range(300))
        assert_exactly_one_ticket_each(pipeline, 300)
        pipeline.alive()
    finally:
        pipeline.stop()


def test_report_queue_transactions_on_a_redis_cluster(redis_cluster: RedisCluster) -> None:
    """The queue's MULTI blocks (XACK + XDEL; requeue; dead letter) keep to one slot: the
    queue and its dead letters share a hash tag, so a Cluster runs them as transactions."""
    client = connect_sync(redis_cluster.config())
    queue = ReportQueue(client, "runner-1", claim_idle_s=30)
    try:
        client.delete(keys.REPORT_QUEUE, keys.REPORT_DEAD_LETTERS)
        assert key_slot(keys.REPORT_QUEUE.encode()) == key_slot(keys.REPORT_DEAD_LETTERS.encode())
        queue.ensure_group()
        client.xadd(keys.REPORT_QUEUE, {"id": "bad", "v": "99"})
        client.xadd(keys.REPORT_QUEUE, {"id": "good", "v": "1"})
        bad = queue.next(block_s=1)
        assert bad is not None and bad.fields["id"] == "bad"
        queue.dead_letter(bad, "unknown_version")
        good = queue.next(block_s=1)
        assert good is not None and good.fields["id"] == "good"
        queue.requeue(good)  # a runner stopping mid-run puts it back at the end
        again = queue.next(block_s=1)
        assert again is not None and again.fields["id"] == "good"
        queue.ack(again.id)
        assert client.xlen(keys.REPORT_QUEUE) == 0
        dead: Any = client.xrange(keys.REPORT_DEAD_LETTERS)
        assert [(f["id"], f["reason"]) for _, f in dead] == [("bad", "unknown_version")]
    finally:
        client.close()
