"""Collector throughput of the MTConnect reader, beside a bare HTTP + XML baseline.

5. **MTConnect -> streams.** An agent process (the test agent,
   ``tests/collector/mtconnect_agent.py``: the MTConnect Institute's Okuma device file
   and recorded SHDR, documents shaped as cppagent writes them) holds a backlog of
   ``MTC_OBSERVATIONS`` observations (the recording fed again and again). Baseline: a
   bare HTTP client (httpx, one connection) that fetches ``/sample?from=&count=`` over
   the whole backlog and parses each document with lxml (every observation's
   ``dataItemId``, ``sequence``, ``timestamp`` and text). Ours: the collector's MTConnect
   reader, its place preset to the backlog's first sequence, streaming it
   (``interval=0``, the same ``count`` per part) into a private redis-server until its
   saved place reaches the agent's ``nextSequence``. Figure: observations/s and the ratio
   ours / baseline, median of ``ROUNDS`` rounds, with each side's CPU time per
   observation (the agent's process is apart from both).

Run: ``REPSYS_BENCH_COLLECTOR=mtconnect python -m bench.collector``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from lxml import etree

from bench.collector import _redis_cpu
from collector.metrics import CollectorMetrics
from collector.service import Collector
from core import heap, keys
from core.config import RepsysConfig, parse_config
from core.lifecycle import Stopper
from core.metrics import new_registry
from repsys.servers import RedisServer, wait_until

MTC_OBSERVATIONS = 60_000
MTC_COUNT = 1000
ROUNDS = int(os.environ.get("REPSYS_BENCH_COLLECTOR_ROUNDS", "3"))


def _agent_main() -> None:
    """Child process: an agent holding the backlog; prints url, instance, first, next."""
    from tests.collector.mtconnect_agent import Agent, shdr_lines  # noqa: PLC0415 - child only

    agent = Agent(buffer_size=MTC_OBSERVATIONS + 10_000)
    first = agent.next
    lines = shdr_lines()
    while agent.next - first < MTC_OBSERVATIONS:
        for line in lines:
            agent.feed(line)
    url = agent.serve()
    print(url, agent.instance, first, agent.next, flush=True)
    sys.stdin.read()  # until the parent closes it
    agent.close()


class _Agent:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.collector_mtc", "--agent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        url, instance, first, nxt = self.proc.stdout.readline().split()
        self.url, self.instance, self.first, self.next = url, instance, int(first), int(nxt)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(20)


def _raw(agent: _Agent) -> tuple[float, float]:
    """Bare httpx + lxml over the backlog: observations/s, CPU us per observation."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    start = agent.first
    got = 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    with httpx.Client(base_url=agent.url, timeout=30) as http:
        while start < agent.next:
            body = http.get("/sample", params={"from": start, "count": MTC_COUNT}).content
            root = etree.fromstring(body, parser)
            for e in root.iter():
                seq = e.get("sequence")
                if seq is not None:
                    _ = (e.get("dataItemId"), int(seq), e.get("timestamp"), e.text)
                    got += 1
            header = next(root.iter("{*}Header"))
            start = int(header.get("nextSequence", "0"))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert got == agent.next - agent.first, (got, agent.next - agent.first)
    return got / elapsed, cpu / got * 1e6


def _config(redis_url: str, agent_url: str) -> RepsysConfig:
    items: list[dict[str, Any]] = [
        {"type": t, "signal": t.lower(), "value": "number"}
        for t in ("LOAD", "POSITION", "ROTARY_VELOCITY", "PATH_FEEDRATE", "ACCUMULATED_TIME")
    ]
    items += [
        {"type": "PART_COUNT", "signal": "part_count", "value": "int"},
        {"type": "EXECUTION", "signal": "run_state"},
        {"type": "CONTROLLER_MODE", "signal": "operation_mode"},
        {"type": "BLOCK", "signal": "block"},
    ]
    return parse_config(
        {
            "machines": [{"id": "m000", "pcn": 1, "workcenter_key": 1, "workcenter_code": "m000"}],
            "redis": {"url": redis_url},
            "logging": {"level": "WARNING"},
            "streams": {"partitions": 8},
            "collector": {
                "sources": [
                    {
                        "type": "mtconnect",
                        "name": "bench",
                        "url": agent_url,
                        "count": MTC_COUNT,
                        "interval_ms": 0,
                        "devices": [{"device": "OKUMA", "machine": "m000"}],
                        "items": items,
                    }
                ]
            },
        },
        file="<bench>",
    )


def _ours(redis_url: str, agent: _Agent) -> tuple[float, float, float, int]:
    """The collector streaming the backlog: observations/s, CPU us per observation of this
    process and of redis-server, signals written."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    state = keys.collector_source_state("collector", "bench")
    client.hset(state, mapping={"instance": agent.instance, "next": str(agent.first)})
    cfg = _config(redis_url, agent.url)
    collector = Collector(cfg, CollectorMetrics(new_registry()))
    stopper = Stopper()
    redis0 = _redis_cpu(client)
    t0, cpu0 = time.perf_counter(), time.process_time()
    thread = threading.Thread(
        target=lambda: asyncio.run(collector.run(stopper, grace_s=5)), daemon=True
    )
    thread.start()
    wait_until(
        lambda: client.hget(state, "next") == str(agent.next),
        timeout=120,
        what="the backlog read",
        interval=0.01,
    )
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = agent.next - agent.first
    redis_cpu = (_redis_cpu(client) - redis0) / n * 1e6
    written = int(collector.sink.written_total)
    stopper.stop()
    thread.join(20)
    return n / elapsed, cpu / n * 1e6, redis_cpu, written


def bench_mtconnect(workdir: Path) -> None:
    redis_srv = RedisServer(workdir / "redis-mtc")
    redis_srv.start()
    agent = _Agent()
    try:
        heap.settle()
        _raw(agent)  # warm-up
        print(
            f"MTConnect -> streams, a backlog of {agent.next - agent.first:,} observations "
            f"(the Institute's Okuma recording), {MTC_COUNT} per document, {ROUNDS} rounds:",
            flush=True,
        )
        ratios = []
        for r in range(ROUNDS):
            base, base_cpu = _raw(agent)
            ours, ours_cpu, redis_cpu, written = _ours(redis_srv.url, agent)
            ratios.append(ours / base)
            print(
                f"  round {r + 1}: collector (stream) {ours:,.0f} observations/s "
                f"({written:,} signals written); bare httpx + lxml {base:,.0f} observations/s; "
                f"ratio {ours / base:.2f}; CPU per observation: collector {ours_cpu:.1f} us "
                f"+ redis-server {redis_cpu:.1f} us, bare {base_cpu:.1f} us",
                flush=True,
            )
        print(f"  median ratio {statistics.median(ratios):.2f} (target >= 0.70)", flush=True)
    finally:
        agent.stop()
        redis_srv.stop()


if __name__ == "__main__":
    if sys.argv[1] == "--agent":
        _agent_main()
