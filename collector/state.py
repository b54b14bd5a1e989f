"""A source's reader state kept in Redis, so that a collector restart does not lose it.

Two readers hold state that the streams alone cannot give back: the MTConnect reader's
place in its agent's buffer (instance and next sequence) and the UDP reader's tool-life
runs. Each keeps it in one hash, :func:`core.keys.collector_source_state`, per collector
configuration and source, so a replica that takes the source's lease over finds it too.

Writes happen after the signals they account for were written (from the sink's ack),
so state never runs ahead of the streams. Redis being away is not the reader's failure:
a write that fails is logged and the next one carries the newer state;
what a restart during the outage finds is the last state written.
"""

from __future__ import annotations

import redis

from core import keys
from core.logs import get_logger
from core.redis import RedisCommands

log = get_logger(__name__)


class SourceState:
    """One source's state hash (``load`` once at start, ``save`` after durable writes)."""

    def __init__(self, client: RedisCommands, collector: str, source: str) -> None:
        self.client = client
        self.key = keys.collector_source_state(collector, source)
        self.source = source

    def load(self) -> dict[str, str] | None:
        """Every field (empty when nothing was saved); None when Redis cannot be read."""
        try:
            raw = self.client.hgetall(self.key)
        except redis.RedisError as exc:
            log.warning("source_state_load_failed", source=self.source, error=str(exc))
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    def save(self, fields: dict[str, str]) -> bool:
        """Write ``fields`` into the hash; False (logged) when Redis refused."""
        if not fields:
            return True
        try:
            # Copied so mypy types it as redis-py's Mapping[FieldT, EncodableT] (invariant keys).
            self.client.hset(self.key, mapping=dict(fields.items()))
        except redis.RedisError as exc:
            # Warnings are rate-limited per source by the logging pipeline (core.logs).
            log.warning("source_state_save_failed", source=self.source, error=str(exc))
            return False
        return True


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
