"""Subscription mode of one connection: one subscription, its consumer, and the watchdog.

The subscription holds every node (publishing interval, sampling interval and queue
size from config) and, when configured, the event items (:mod:`collector.opcua.events`).
Notifications are taken from asyncua's iterator queue (no task per notification) and
handed to the sink in batches every :data:`FLUSH_S`.

Watchdog: a subscription can die without the connection dropping (a server that lost
its monitored items, a gateway whose device went away). When no data notification has
arrived for ``watchdog_factor`` times the expected interval, the subscription is deleted
and recreated; if data is still missing after as long again,
``SourceUnavailableError(reason="watchdog")`` is raised and the supervisor reconnects. A
source whose values never change will be resubscribed periodically (harmless: the server
resends current values); ``watchdog_factor: 0`` turns the watchdog off for it.

Heartbeat: a subscription reports changes only, so a stopped machine whose values stay
put sends nothing, and ``no_data`` would read the stop as a dead link (and inhibit
``downtime``): the chaos soak found it on the machines it serves over OPC UA (decision
0470). While the subscription delivers data (any node of the source within the watchdog's
limit, or two heartbeats), each machine of the source gets a ``source_alive`` signal
(value 1) every ``heartbeat_s``. A machine whose device is gone shows it in its status
codes (bad quality, which ``no_data`` fires on at once); a source gone quiet as a whole
gets no heartbeat, and the watchdog acts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, OpcEvent, OverflowPolicy, Subscription

from collector.errors import SourceUnavailableError
from collector.opcua.events import Events
from collector.opcua.intake import KIND, Intake, Known, known
from collector.opcua.resolve import Resolved
from core.config.collector import OpcuaSource
from core.lifecycle import Stopper
from core.logs import get_logger

log = get_logger(__name__)

FLUSH_S = 0.05
#: Keep-alive count requested: a publish response at least every 10 intervals when idle.
#: asyncua recreates a subscription silent for 1.5 keep-alive periods on its own; ours
#: (data, ``watchdog_factor``) is the one that counts, so asyncua's must be the later.
KEEPALIVE_COUNT = 10


class Subscriber:
    """Reads one connection by subscription until stopped, lost or silent (see above)."""

    def __init__(
        self,
        client: Client,
        source: OpcuaSource,
        by_id: dict[ua.NodeId, Resolved],
        intake: Intake,
        events: Events,
    ) -> None:
        self.client = client
        self.source = source
        self.by_id = by_id
        self.intake = intake
        self.events = events

    async def run(self, stopper: Stopper) -> None:
        """Subscribe and consume; resubscribe or raise when the data goes quiet."""
        intake, metrics, name = self.intake, self.intake.metrics, self.source.name
        nodes = list(self.by_id.values())
        sub = await self._subscribe(nodes)
        consumer = asyncio.ensure_future(self._consume(sub))
        resubscribed_at: float | None = None
        beat = self.source.heartbeat_s
        next_beat = time.monotonic() + beat
        machines = sorted({r.spec.machine for r in nodes})
        try:
            while not await stopper.wait_async(FLUSH_S):
                intake.flush()
                if consumer.done():
                    consumer.result()  # re-raise what killed it
                    raise SourceUnavailableError("subscription ended", reason="session")
                state = self.client.state.name
                if state not in ("CONNECTED",):
                    raise SourceUnavailableError(f"connection {state}", reason="session")
                limit = self._quiet_limit()
                quiet = time.monotonic() - intake.last_data
                if beat > 0 and time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + beat
                    if quiet < max(limit, 2 * beat):
                        intake.heartbeat(machines)
                if limit <= 0 or quiet < limit:
                    resubscribed_at = None
                    continue
                if resubscribed_at is None:
                    metrics.watchdog.labels(name, "resubscribe").inc()
                    log.warning("opcua_watchdog_resubscribe", source=name, quiet_s=round(quiet, 1))
                    consumer.cancel()
                    try:
                        await sub.delete()
                    except Exception as exc:  # the old subscription may be gone already
                        log.info("opcua_delete_subscription_failed", error=str(exc))
                    sub = await self._subscribe(nodes)
                    consumer = asyncio.ensure_future(self._consume(sub))
                    resubscribed_at = time.monotonic()
                    intake.last_data = resubscribed_at - limit / 2  # give it half a period
                else:
                    metrics.watchdog.labels(name, "reconnect").inc()
                    raise SourceUnavailableError("no data after resubscribing", reason="watchdog")
        finally:
            consumer.cancel()
            intake.flush()

    def _quiet_limit(self) -> float:
        interval = max(self.source.publishing_interval_ms, self.source.sampling_interval_ms)
        return self.source.watchdog_factor * interval / 1000.0

    async def _subscribe(self, nodes: list[Resolved]) -> Subscription:
        client = self.client
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = float(self.source.publishing_interval_ms)
        params.RequestedMaxKeepAliveCount = KEEPALIVE_COUNT
        params.RequestedLifetimeCount = KEEPALIVE_COUNT * 10
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        sub = await client.create_subscription(
            params,
            None,
            queue_maxsize=max(10_000, 4 * len(nodes)),
            overflow=OverflowPolicy.WARN,
        )
        if nodes:
            results = await sub.subscribe_data_change(
                [client.get_node(r.node_id) for r in nodes],
                queuesize=self.source.queue_size,
                sampling_interval=ua.Double(self.source.sampling_interval_ms),
            )
            self._refused(nodes, results)
        await self.events.subscribe(client, sub)
        self.intake.last_data = time.monotonic()
        return sub

    def _refused(self, nodes: list[Resolved], results: list[int | ua.StatusCode]) -> None:
        """Log and count the items the server would not monitor (a node id it lacks).

        asyncua answers one handle or one bad status code per node, in order, and raises
        nothing: without this a mistyped node id was dropped with no word.
        """
        for r, result in zip(nodes, results, strict=True):
            if not isinstance(result, ua.StatusCode):
                continue
            status = result.name
            self.intake.metrics.items_refused.labels(KIND, self.source.name, status).inc()
            log.warning(
                "opcua_item_refused",
                source=self.source.name,
                machine=r.spec.machine,
                signal=r.spec.signal,
                node=r.node_id.to_string(),
                status=status,
            )

    async def _consume(self, sub: Subscription) -> None:
        intake, by_id, name = self.intake, self.by_id, self.source.name
        last_message = intake.metrics.last_message
        # The subscription's Node objects (one per monitored item, for its lifetime) →
        # what decides their rows: hashing a NodeId per notification cost more than the
        # rest of its row. Keyed by id() with the node kept alive in the value.
        seen: dict[int, tuple[Any, Known | None]] = {}
        async for ev in sub:
            now = time.time()
            try:
                if isinstance(ev, DataChangeEvent):
                    node = ev.node
                    hit = seen.get(id(node))
                    if hit is None:
                        r = by_id.get(node.nodeid)
                        hit = seen[id(node)] = (node, None if r is None else known(r))
                    if hit[1] is None:
                        continue
                    row = intake.row(hit[1], ev.data.monitored_item.Value, now)
                elif isinstance(ev, OpcEvent):
                    row = self.events.row(ev.event, now)
                else:
                    continue
            except Exception as exc:  # a value no converter foresaw must not end the intake
                item = getattr(ev, "node", None)
                where = item.nodeid.to_string() if item is not None else type(ev).__name__
                data = getattr(getattr(ev, "data", None), "monitored_item", None)
                intake.reject(
                    exc, where, data.Value if data is not None else getattr(ev, "event", None)
                )
                continue
            intake.notifications += 1
            intake.last_data = time.monotonic()
            last_message.seen(KIND, name, now)
            if row is not None:
                intake.pending.append(row)
