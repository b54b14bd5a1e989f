"""A partition's stream, read and acknowledged only by its lease holder.

Reading (``XREADGROUP``) and checkpointing (state ``HSET`` + ``XACK``) first check the
partition's lease: a worker that lost its lease while paused cannot take new entries
(they would sit in its pending list, invisible to the new holder) nor acknowledge entries
whose effects the new holder's state does not contain. The state and the acknowledgement
are one step (a Lua script): after a crash every entry is either reflected in the
checkpointed state and acknowledged, or pending and replayed. All three keys of a
partition share the hash tag ``{p}``, so the scripts run on one Redis Cluster node.

How the read is fenced and sent depends on the topology (a ``MULTI`` under ``WATCH`` on a
plain server or Sentinel, a Lua script per partition on a Cluster): that is
``rules/reads.py``, one transport per topology, chosen once when the stream is built.

Entries that do not decode go to ``core.keys.RULES_DEAD_LETTERS`` with their reason and
are acknowledged with the next checkpoint (that stream has no hash tag, so a crash between
the two may dead-letter an entry twice; never lose it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from redis.exceptions import ResponseError

from core import keys
from core.model import DecodeError
from core.redis import RedisCommands
from rules.reads import Answer, Entry, PendingRead, ReadTransport, read_transport

#: KEYS[1] = partition lease, KEYS[2] = partition state hash, KEYS[3] = partition stream.
#: ARGV[1] = worker id, ARGV[2] = group, ARGV[3] = lease TTL ms, ARGV[4] = n, then n
#: field/value pairs of state, then the entry ids to acknowledge.
#: Only for the lease holder (renewing the lease): writes the state and acknowledges the
#: entries it reflects, in chunks (unpack has a stack limit). Returns 1, or 0 if not ours.
CHECKPOINT_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local stop = 4 + 2 * tonumber(ARGV[4])
local i = 5
while i <= stop do
  local j = math.min(i + 999, stop)
  redis.call('HSET', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
i = stop + 1
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('XACK', KEYS[3], ARGV[2], unpack(ARGV, i, j))
  i = j + 1
end
return 1
"""

#: Cap of the dead-letter stream (approximate): enough to investigate, bounded.
DEAD_LETTER_MAXLEN = 100_000


class PartitionStream:
    """The Redis operations of one worker on the partitions it holds."""

    def __init__(
        self,
        redis: RedisCommands,
        worker_id: str,
        group: str = keys.RULES_GROUP,
        *,
        reads: ReadTransport | None = None,
    ) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.group = group
        self._checkpoint = redis.register_script(CHECKPOINT_LUA)
        #: How reads go on this topology (``rules/reads.py``), chosen once.
        self.reads = reads or read_transport(redis, worker_id, group)

    def ensure_group(self, p: int) -> None:
        """Create the consumer group (from the start of the stream) if it is missing."""
        try:
            self.redis.xgroup_create(keys.signal_stream(p), self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, partitions: list[int], count: int) -> Answer:
        """New entries of each partition (None: lease lost), and the last id when none."""
        return self.reads.send(partitions, count).result()

    def send_read(self, partitions: list[int], count: int) -> PendingRead:
        """Check the leases and send the read; take its batches with ``result()``.

        The caller evaluates the batch it has while Redis prepares the next one, on the
        other core (``read_once`` in ``rules/worker.py``). One read at a time is in
        flight: the next is sent only after the previous one's result was taken.
        """
        return self.reads.send(partitions, count)

    def wait(self, last_ids: dict[int, str], block_ms: int) -> None:
        """Block until any of the streams gets an entry after ``last_ids`` (or timeout)."""
        self.reads.wait(last_ids, block_ms)

    def abandon(self) -> None:
        """Drop any read in flight: its entries stay pending, for whoever takes the
        partition next (:meth:`claim_pending`)."""
        self.reads.abandon()

    def close(self) -> None:
        """Give the reads' connection back to the pool."""
        self.reads.close()

    def claim_pending(self, p: int, page: int = 1000) -> Iterator[list[Entry]]:
        """Take over every pending entry of the partition (a dead holder's), in id order."""
        start = "0-0"
        stream = keys.signal_stream(p)
        while True:
            reply = self.redis.xautoclaim(stream, self.group, self.worker_id, 0, start, count=page)
            start, entries = reply[0], reply[1]
            # A deleted entry is claimed with no fields: nothing to evaluate.
            live = [
                (entry_id, [x for kv in fields.items() for x in kv])
                for entry_id, fields in entries
                if fields is not None
            ]
            if live:
                yield live
            if start in ("0-0", b"0-0"):
                return

    def checkpoint(self, p: int, state: dict[str, str], ids: list[str], lease_ms: int) -> bool:
        """Write ``state`` and acknowledge ``ids`` atomically; False when the lease is gone."""
        args: list[Any] = [self.worker_id, self.group, lease_ms, len(state)]
        for field, value in state.items():
            args += (field, value)
        args += ids
        done = self._checkpoint(
            keys=[keys.rules_lease(p), keys.rules_state(p), keys.signal_stream(p)], args=args
        )
        return bool(done)

    def load_state(self, p: int) -> dict[str, str]:
        return dict(self.redis.hgetall(keys.rules_state(p)))

    def dead_letter(self, p: int, entry_id: str, fields: list[str], err: DecodeError) -> None:
        self.redis.xadd(
            keys.RULES_DEAD_LETTERS,
            {
                "stream": keys.signal_stream(p),
                "id": entry_id,
                "reason": err.reason,
                "error": str(err),
                "fields": json.dumps(_as_dict(fields), separators=(",", ":")),
            },
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )

    def backlog(self, p: int) -> tuple[int, int]:
        """(entries not yet delivered to the group, entries delivered and not acked)."""
        for group in self.redis.xinfo_groups(keys.signal_stream(p)):
            if group.get("name") == self.group:
                return int(group.get("lag") or 0), int(group.get("pending") or 0)
        return 0, 0


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair (``"1700000000000-3"`` -> ``(1700000000000, 3)``)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _as_dict(flat: list[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=False))
