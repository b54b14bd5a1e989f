"""The collector process: readers under a supervisor, feeding one stream sink.

The supervisor owns the loop: it awaits each reader's ``run``, and when a reader loses
its source it counts the failure (``repsys_collector_reconnects_total{reason}``), waits
with jittered exponential backoff and runs it again, so readers stay small. It runs a
reader only while this process holds the source's lease (``collector/lease.py``), so
replicas of one configuration share its sources instead of reading each twice. Readers are
built from the explicit :data:`READERS` registry, keyed by the config ``type``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis

from collector.lease import SourceLease, process_name
from collector.metrics import CollectorMetrics
from collector.mqtt.reader import MqttReader
from collector.mtconnect.reader import MtconnectReader
from collector.opcua.reader import OpcuaReader
from collector.reader import Reader, Sink
from collector.sink import StreamSink
from collector.sparkplug.reader import SparkplugReader
from collector.udp.reader import UdpReader
from core import heap
from core.config import RepsysConfig
from core.config.collector import SOURCE_TYPES
from core.lifecycle import Backoff, Stopper, run_until_stopped
from core.logs import get_logger
from core.redis import RedisCommands, connect_sync

log = get_logger(__name__)

#: Builds a source's reader: ``cls.from_config(source, cfg, sink, metrics)``.
Builder = Callable[[Any, RepsysConfig, Sink, CollectorMetrics], Reader]


class ReaderClass(Protocol):
    """What the registry needs of a reader class: its ``kind`` and ``from_config``."""

    kind: str

    def from_config(
        self, source: Any, cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics
    ) -> Reader: ...


#: Every reader, once. A reader class declares ``kind`` (its source model's ``type``,
#: ``core.config.collector.SOURCE_TYPES``) and ``from_config``; the registry is built here.
READER_CLASSES: tuple[ReaderClass, ...] = (
    MqttReader,
    OpcuaReader,
    UdpReader,
    SparkplugReader,
    MtconnectReader,
)


def _registry(classes: tuple[ReaderClass, ...]) -> dict[str, Builder]:
    """``type`` -> builder; refuses a kind twice and a source type without a reader.

    Raises:
        TypeError: a kind registered twice, or a source model no reader reads.
    """
    readers: dict[str, Builder] = {}
    for cls in classes:
        if cls.kind in readers:
            raise TypeError(f"reader kind {cls.kind!r} registered twice")
        readers[cls.kind] = cls.from_config
    if missing := set(SOURCE_TYPES) - set(readers):
        raise TypeError(f"source types without a reader: {sorted(missing)}")
    return readers


#: Reader builders by source ``type`` (the folder name and the metric label).
READERS: dict[str, Builder] = _registry(READER_CLASSES)


def build_readers(cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics) -> list[Reader]:
    return [READERS[src.type](src, cfg, sink, metrics) for src in cfg.collector.sources]


async def supervise(
    reader: Reader,
    stopper: Stopper,
    metrics: CollectorMetrics,
    *,
    cap_s: float = 10.0,
    lease: SourceLease | None = None,
    leases: dict[str, str] | None = None,
) -> None:
    """Run ``reader`` until stopped, restarting it with backoff after each failure.

    With a ``lease``, only while this process holds it (``collector/lease.py``): it is
    taken when free, renewed every ``lease.renew_s``, and the reader stops when another
    process holds it (this one was paused or cut off longer than the TTL). While Redis
    cannot say, the reader reads (see ``_keep``).
    """
    if lease is None:
        await _run(reader, stopper, metrics, cap_s)
        return
    owned = metrics.owned.labels(reader.kind, reader.name)
    while not stopper.stopped:
        try:
            mine = await asyncio.to_thread(lease.acquire)
        except redis.RedisError as exc:
            # Nobody can say who owns the source while Redis is away. Reading it keeps the
            # outage buffer's promise (a replica started then may read it too, until
            # Redis answers and the lease says which one stops).
            log.warning("collector_source_lease_unknown", source=reader.name, error=str(exc))
            mine = None
        if mine is False:
            if leases is not None:
                leases[reader.name] = "other"
            await stopper.wait_async(lease.renew_s)
            continue
        if leases is not None:
            leases[reader.name] = "mine"
        owned.set(1)
        log.info("collector_source_acquired", reader=reader.kind, source=reader.name, sure=mine)
        held = Stopper()
        keeper = asyncio.create_task(_keep(lease, stopper, held, mine=bool(mine)))
        try:
            await _run(reader, held, metrics, cap_s)
        finally:
            held.stop()
            await keeper
            owned.set(0)
            with contextlib.suppress(redis.RedisError):
                await asyncio.to_thread(lease.release)
        if not stopper.stopped:
            log.warning("collector_source_lease_lost", reader=reader.kind, source=reader.name)


async def _keep(lease: SourceLease, stopper: Stopper, held: Stopper, *, mine: bool) -> None:
    """Renew ``lease`` until stopped; stop ``held`` (the reader) when another holds it.

    ``mine`` False: the lease could not be taken (Redis away); it is taken as soon as
    Redis answers, or the reader stops if another process took it meanwhile.
    """
    while not held.stopped:
        if await stopper.wait_async(lease.renew_s):
            held.stop()
            return
        if held.stopped:
            return
        try:
            # A lease that expired while Redis was away and nobody took is taken again.
            ok = (mine and await asyncio.to_thread(lease.renew)) or await asyncio.to_thread(
                lease.acquire
            )
        except redis.RedisError:
            continue  # Redis away: go on reading into the sink's outage buffer
        if not ok:
            held.stop()
            return
        mine = True


async def _run(reader: Reader, stopper: Stopper, metrics: CollectorMetrics, cap_s: float) -> None:
    backoff = Backoff(base_s=0.5, cap_s=cap_s)
    while not stopper.stopped:
        try:
            await reader.run(stopper)
            backoff.reset()
        except Exception as exc:  # any failure of a source: count, back off, reconnect
            reason = getattr(exc, "reason", "error")
            metrics.reconnects.labels(reader.kind, reader.name, reason).inc()
            metrics.connected.labels(reader.kind, reader.name).set(0)
            delay = backoff.next()
            log.warning(
                "collector_source_lost",
                reader=reader.kind,
                source=reader.name,
                reason=reason,
                error=str(exc) or type(exc).__name__,
                retry_in_s=round(delay, 2),
            )
            await stopper.wait_async(delay)


class Collector:
    """One collector process: a sink, its readers, their supervisors."""

    def __init__(
        self, cfg: RepsysConfig, metrics: CollectorMetrics, *, client: RedisCommands | None = None
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.client = client if client is not None else connect_sync(cfg.redis)
        self.sink = StreamSink(
            self.client,
            cfg.collector.sink,
            metrics,
            partitions=cfg.streams.partitions,
            max_len=cfg.streams.max_len,
            # One heartbeat per collector: replicas of one configuration would overwrite
            # each other's counts under the configuration's name.
            name=f"{process_name(cfg.collector.name)}:{secrets.token_hex(3)}",
            heartbeat_s=cfg.collector.heartbeat_interval_s,
        )
        self.readers = build_readers(cfg, self.sink, metrics)
        #: Source name -> "mine" / "other": who reads it, once the lease said so.
        self.leases: dict[str, str] = {}
        #: Sources this process has read, or another replica reads, since it started.
        self._settled: set[str] = set()

    async def run(self, stopper: Stopper, *, grace_s: float = 10.0) -> None:
        """Read every source until stopped; then flush the buffer for up to ``grace_s``."""
        heap.settle()  # built: what is alive now lives as long as the process (core/heap.py)
        self.sink.start()
        log.info("collector_started", sources=[r.name for r in self.readers])
        try:
            cc = self.cfg.collector
            tasks: list[Awaitable[None]] = [
                supervise(
                    r,
                    stopper,
                    self.metrics,
                    cap_s=cc.reconnect_max_s,
                    lease=SourceLease(self.client, cc.name, r.name, ttl_s=cc.source_lease_ttl_s),
                    leases=self.leases,
                )
                for r in self.readers
            ]
            if tasks:
                await run_until_stopped(stopper, tasks, grace_s=grace_s)
            else:
                await stopper.wait_async()
        finally:
            await asyncio.to_thread(self.sink.stop, grace_s)
            log.info("collector_stopped", written=self.sink.written_total)

    def healthy(self) -> tuple[bool, str]:
        """Alive unless the sink's writer or a reader's intake died (/healthz)."""
        if not self.sink.alive:
            return False, "the stream sink's writer thread died"
        for reader in self.readers:
            ok, why = reader.healthy()
            if not ok:
                return False, why
        return True, ""

    def ready(self) -> tuple[bool, str]:
        """Ready when the sink reaches Redis and every source has been taken up once.

        A source is taken up when another replica holds its lease, or this process holds
        it and its reader has connected (subscribed, for MQTT) at least once: a process is
        not ready while messages sent to it would find no subscription. After that, sources
        come and go without readiness flapping (the outage buffer covers them).
        """
        if not self.sink.redis_ok:
            return False, "redis unreachable"
        for reader in self.readers:
            if reader.name in self._settled:
                continue
            who = self.leases.get(reader.name)
            connected = getattr(reader, "connected", None)
            if who == "other" or (who == "mine" and (connected is None or connected.is_set())):
                self._settled.add(reader.name)
                continue
            return False, f"source {reader.name} not taken up yet"
        return True, ""
