"""Which collector process reads a source: one token lease per source.

Two replicas of one collector configuration (the chart's ``collector.replicas``) would
both connect to every source: MQTT brokers drop the older of two connections with one
client id, so the two took turns disconnecting, and OPC UA sources were read twice.
Each source is read only by the holder of its lease (``keys.collector_source_lease``,
the token-lease scripts of ``core.lease``); the other replicas wait and take it within
``source_lease_ttl_s`` when the holder stops renewing (killed, partitioned, stopped).

The MQTT client id stays the same from holder to holder: the broker's persistent
session, with the QoS 1 messages it queued while nobody held the lease, passes to the
next holder, so a takeover loses nothing the broker kept.
"""

from __future__ import annotations

import os
import secrets
import socket

from core import keys
from core.lease import RELEASE_LUA, RENEW_LUA
from core.redis import RedisCommands


def process_name(collector: str) -> str:
    """``<collector>:<host>:<pid>``: this process among the replicas of one configuration."""
    return f"{collector}:{socket.gethostname()}:{os.getpid()}"


class SourceLease:
    """The lease on one source, held by this process's random token."""

    def __init__(self, client: RedisCommands, collector: str, source: str, *, ttl_s: float) -> None:
        self.client = client
        self.source = source
        self.key = keys.collector_source_lease(collector, source)
        #: Who holds it, readable with GET: host, process and a random part.
        self.token = f"{process_name(collector)}:{secrets.token_hex(4)}"
        self.ttl_ms = max(1000, round(ttl_s * 1000))
        #: Renewals come three times a lease, so one slow round trip loses nothing.
        self.renew_s = ttl_s / 3
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)

    def acquire(self) -> bool:
        """Take the lease if nobody holds it. Raises ``redis.RedisError``."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend it; False when another process holds it now. Raises ``redis.RedisError``."""
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        """Give it up (a clean stop), so a replica takes the source at once."""
        self._release(keys=[self.key], args=[self.token])
