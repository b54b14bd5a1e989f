"""The durable report queue: a Redis stream read by the runners' consumer group.

The design's ``TB_Queue`` was Pub/Sub, which loses a request when no runner listens at
that moment. Here a request is a stream entry; a runner reads it into its pending list
(XREADGROUP), keeps it alive while it waits for the mutex and runs (XCLAIM to itself,
which resets the idle time), and acknowledges it only once the outcome is in the database.
A runner that dies leaves the entry pending; after ``claim_idle_s`` another runner takes it
over (XAUTOCLAIM) and runs the request again, resuming at the first unfinished step.

Acknowledged entries are deleted in the same transaction (XACK + XDEL), so the stream
holds only unfinished work and never needs trimming.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from core import keys
from core.logs import get_logger
from core.redis import RedisCommands
from runner.metrics import RunnerMetrics

log = get_logger(__name__)


@dataclass(frozen=True)
class Entry:
    """One queue entry: its stream id and fields."""

    id: str
    fields: dict[str, str]
    reclaimed: bool = False


class ReportQueue:
    """One runner's view of the queue (its consumer name in the group)."""

    def __init__(
        self,
        client: RedisCommands,
        consumer: str,
        *,
        claim_idle_s: float,
        metrics: RunnerMetrics | None = None,
    ) -> None:
        self.client = client
        self.consumer = consumer
        self.claim_idle_ms = max(1, round(claim_idle_s * 1000))
        self.metrics = metrics

    def ensure_group(self) -> None:
        """Create the stream and the runners' group if they do not exist."""
        try:
            self.client.xgroup_create(keys.REPORT_QUEUE, keys.RUNNERS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def reclaim(self) -> Entry | None:
        """Take over one entry idle longer than ``claim_idle_s`` in another consumer."""
        result = self.client.xautoclaim(
            keys.REPORT_QUEUE,
            keys.RUNNERS_GROUP,
            self.consumer,
            self.claim_idle_ms,
            start_id="0-0",
            count=1,
        )
        entries = result[1] if len(result) > 1 else []
        for entry_id, fields in entries:
            if fields is None:  # deleted while pending: nothing to run
                self.client.xack(keys.REPORT_QUEUE, keys.RUNNERS_GROUP, entry_id)
                continue
            if self.metrics is not None:
                self.metrics.reclaimed.inc()
            log.warning("report_entry_reclaimed", entry=entry_id, consumer=self.consumer)
            return Entry(entry_id, dict(fields), reclaimed=True)
        return None

    def read(self, block_s: float) -> Entry | None:
        """The next new entry, waiting up to ``block_s`` (0: do not wait)."""
        block_ms = round(block_s * 1000) if block_s > 0 else None
        result = self.client.xreadgroup(
            keys.RUNNERS_GROUP,
            self.consumer,
            {keys.REPORT_QUEUE: ">"},
            count=1,
            block=block_ms,
        )
        for _stream, entries in result or []:
            for entry_id, fields in entries:
                return Entry(entry_id, dict(fields))
        return None

    def next(self, block_s: float) -> Entry | None:
        """A reclaimed entry if one is due, else a new one."""
        return self.reclaim() or self.read(block_s)

    def touch(self, entry_id: str) -> None:
        """Reset the entry's idle time: "this runner is still on it"."""
        self.client.xclaim(
            keys.REPORT_QUEUE, keys.RUNNERS_GROUP, self.consumer, 0, [entry_id], justid=True
        )

    def ack(self, entry_id: str) -> None:
        """Done with the entry: acknowledge and delete it, atomically."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(keys.REPORT_QUEUE, keys.RUNNERS_GROUP, entry_id)
        pipe.xdel(keys.REPORT_QUEUE, entry_id)
        pipe.execute()

    def requeue(self, entry: Entry) -> None:
        """Put the request back at the end of the queue (a runner stopping mid-run)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(keys.REPORT_QUEUE, entry.fields)
        pipe.xack(keys.REPORT_QUEUE, keys.RUNNERS_GROUP, entry.id)
        pipe.xdel(keys.REPORT_QUEUE, entry.id)
        pipe.execute()

    def dead_letter(self, entry: Entry, reason: str, detail: str = "") -> None:
        """Move an entry that cannot be run to the dead-letter stream, with the reason."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(
            keys.REPORT_DEAD_LETTERS,
            {**entry.fields, "entry": entry.id, "reason": reason, "detail": detail[:1000]},
            maxlen=10_000,
            approximate=True,
        )
        pipe.xack(keys.REPORT_QUEUE, keys.RUNNERS_GROUP, entry.id)
        pipe.xdel(keys.REPORT_QUEUE, entry.id)
        pipe.execute()
        if self.metrics is not None:
            self.metrics.dead_letters.labels(reason=reason).inc()
        log.warning("report_entry_dead_lettered", entry=entry.id, reason=reason, detail=detail)
