"""Poll mode (``mode: poll``): one Read of every node each ``poll_interval_s``.

For servers whose subscriptions are unusable (some gateways) and for ``collector once``.
A value that will not convert is dead-lettered and the round goes on.
"""

from __future__ import annotations

import time

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds

from collector.opcua.intake import KIND, Intake
from collector.opcua.resolve import Resolved
from core.config.collector import OpcuaSource
from core.lifecycle import Stopper
from core.model import Signal


async def read_round(client: Client, nodes: list[Resolved], intake: Intake) -> list[Signal]:
    """Every node's current value, read in one request, as signals."""
    if not nodes:
        return []
    params = ua.ReadParameters()
    for r in nodes:
        rv = ua.ReadValueId()
        rv.NodeId = r.node_id
        rv.AttributeId = AttributeIds.Value
        params.NodesToRead.append(rv)
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    values = await client.uaclient.read(params)
    now = time.time()
    out = []
    for r, dv in zip(nodes, values, strict=True):
        try:
            sig = intake.signal(r, dv, now)
        except Exception as exc:  # as in subscription mode: one value must not stop the round
            intake.reject(exc, r.node_id.to_string(), dv)
            continue
        if sig is not None:
            out.append(sig)
    return out


async def run_polled(
    client: Client, source: OpcuaSource, nodes: list[Resolved], intake: Intake, stopper: Stopper
) -> None:
    """Read rounds every ``poll_interval_s`` until stopped."""
    while not stopper.stopped:
        started = time.monotonic()
        signals = await read_round(client, nodes, intake)
        intake.notifications += len(signals)
        if signals:
            intake.metrics.last_message.seen(KIND, source.name, time.time())
        intake.sink.submit(KIND, signals)
        elapsed = time.monotonic() - started
        await stopper.wait_async(max(0.0, source.poll_interval_s - elapsed))
