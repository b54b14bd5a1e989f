"""The OPC UA reader: subscriptions (or polling) with a data watchdog, via asyncua.

On every connect the reader resolves its nodes afresh (:mod:`collector.opcua.resolve`),
then reads them by subscription (:mod:`collector.opcua.subscribe`, with the watchdog and
the event items of :mod:`collector.opcua.events`) or by polling
(:mod:`collector.opcua.poll`). Values become rows in :mod:`collector.opcua.intake`. This
module is the reader contract of :mod:`collector.reader`: connect, run until stopped or
lost, read once.
"""

from __future__ import annotations

import asyncio
import time

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError

from collector.errors import SourceUnavailableError
from collector.metrics import CollectorMetrics
from collector.opcua.events import Events
from collector.opcua.intake import KIND, Intake
from collector.opcua.poll import read_round, run_polled
from collector.opcua.resolve import Resolved, connect, resolve_nodes
from collector.opcua.subscribe import Subscriber
from collector.reader import Sink
from core.config import RepsysConfig
from core.config.collector import OpcuaSource
from core.lifecycle import Stopper
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)


class OpcuaReader:
    """Reads one OPC UA server (see the module docstring)."""

    kind = KIND

    @classmethod
    def from_config(
        cls, source: OpcuaSource, cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics
    ) -> OpcuaReader:
        """The reader of ``source`` as ``collector.service`` builds it."""
        return cls(source, sink, metrics)

    def __init__(self, source: OpcuaSource, sink: Sink, metrics: CollectorMetrics) -> None:
        self.source = source
        self.name = source.name
        self.sink = sink
        self.metrics = metrics
        self.intake = Intake(source.name, sink, metrics)
        self.events = Events(source, self.intake)
        self._by_id: dict[ua.NodeId, Resolved] = {}

    async def _open(self) -> Client:
        client = await connect(self.source)
        try:
            nodes = await resolve_nodes(client, self.source)
        except Exception:
            await _disconnect(client)
            raise
        self._by_id = {r.node_id: r for r in nodes}
        return client

    async def run(self, stopper: Stopper) -> None:
        """Connect, resolve, read until stopped; raise SourceUnavailableError when lost."""
        client = await self._open()
        self.metrics.connected.labels(KIND, self.name).set(1)
        # Intake is judged stalled from here when nothing follows.
        self.metrics.last_message.seen(KIND, self.name, time.time())
        log.info("opcua_connected", source=self.name, nodes=len(self._by_id))
        try:
            if self.source.mode == "poll":
                nodes = list(self._by_id.values())
                await run_polled(client, self.source, nodes, self.intake, stopper)
            else:
                subscriber = Subscriber(client, self.source, self._by_id, self.intake, self.events)
                await subscriber.run(stopper)
        except (OSError, TimeoutError, UaError) as exc:
            raise SourceUnavailableError(f"session lost: {exc}", reason="session") from exc
        finally:
            self.metrics.connected.labels(KIND, self.name).set(0)
            await _disconnect(client)

    def healthy(self) -> tuple[bool, str]:
        """Always: a stalled subscription is the watchdog's (it reconnects), see above."""
        return True, ""

    async def read_once(self, seconds: float) -> list[Signal]:
        """Connect, read every node once, disconnect."""
        client = await asyncio.wait_for(self._open(), seconds)
        try:
            nodes = list(self._by_id.values())
            return await asyncio.wait_for(read_round(client, nodes, self.intake), seconds)
        finally:
            await _disconnect(client)


async def _disconnect(client: Client) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except Exception as exc:  # the server may already be gone: nothing to close
        log.debug("opcua_disconnect_failed", error=str(exc))
