"""The streams' trim never holds the sink's writes (decision 0451).

Between batches, the writer used to trim every partition with a round trip each (and an
``XLEN`` each): on a slow link (here a proxy that delays every request by ``DELAY_S``, as
a busy machine's scheduler did) a signal arriving during a trim waited for sixteen round
trips. Now the trim runs on its own thread, every partition in one round trip.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import redis

from collector.metrics import CollectorMetrics
from collector.sink import StreamSink
from core import keys
from core.config.collector import SinkConfig
from core.metrics import new_registry, sample
from repsys.servers import wait_until

#: What the proxy adds to each request on its way to Redis: one round trip's latency.
DELAY_S = 0.03
PARTITIONS = 8


class _DelayingProxy:
    """A TCP proxy to Redis that holds each chunk of a request for ``delay_s``."""

    def __init__(self, target: tuple[str, int], delay_s: float) -> None:
        self.target, self.delay_s = target, delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, delayed: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if delayed:
                    time.sleep(self.delay_s)  # the link's latency, not a wait for a condition
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                sock.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


@pytest.fixture
def slow_url(redis_url: str) -> Iterator[str]:
    url = urlparse(redis_url)
    proxy = _DelayingProxy((url.hostname or "127.0.0.1", url.port or 6379), DELAY_S)
    yield f"redis://127.0.0.1:{proxy.port}{url.path}"
    proxy.close()


def test_a_signal_never_waits_for_a_trim(slow_url: str, redis_client: redis.Redis) -> None:
    registry = new_registry()
    client = redis.Redis.from_url(slow_url, decode_responses=True, socket_timeout=10)
    # A trim as often as it can run: nearly every batch meets one.
    s = StreamSink(
        client,
        SinkConfig(linger_ms=0, trim_interval_s=0.01),
        CollectorMetrics(registry),
        partitions=PARTITIONS,
        max_len=1000,
        heartbeat_s=3600,
    )
    s.start()
    try:
        waits = []
        for n in range(40):
            done = threading.Event()
            row = ["cnc101", "1.5", "2.5", ["n"], [str(n)]]
            t0 = time.perf_counter()
            s.submit_rows("mqtt", "cnc101", [row], ack=done.set)
            assert done.wait(10), f"message {n} was not acknowledged"
            waits.append(time.perf_counter() - t0)
        # The streams were trimmed meanwhile (the gauge is set by each trim).
        partition = str(keys.partition_of("cnc101", PARTITIONS))
        wait_until(
            lambda: (
                sample(registry, "repsys_collector_stream_entries", {"partition": partition}) == 40
            ),
            timeout=10,
            what="a trim after the last write",
        )
    finally:
        s.stop(5)
    # One round trip a batch; a trim between batches added sixteen (about 0.5 s here).
    assert max(waits) < 8 * DELAY_S, sorted(waits)[-5:]


def test_one_trim_is_one_round_trip(slow_url: str, redis_client: redis.Redis) -> None:
    registry = new_registry()
    client = redis.Redis.from_url(slow_url, decode_responses=True, socket_timeout=10)
    s = StreamSink(
        client,
        SinkConfig(trim_interval_s=3600),
        CollectorMetrics(registry),
        partitions=PARTITIONS,
        max_len=1000,
    )
    s.trim()  # connects, so the next one is only its requests
    t0 = time.perf_counter()
    s.trim()
    took = time.perf_counter() - t0
    assert took < 3 * DELAY_S, took
    for p in range(PARTITIONS):
        assert sample(registry, "repsys_collector_stream_entries", {"partition": str(p)}) == 0
