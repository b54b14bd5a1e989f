"""A partition's stream, read and acknowledged only by its lease holder.

Reading (``XREADGROUP``) and checkpointing (state ``HSET`` + ``XACK``) first check the
partition's lease: a worker that lost its lease while paused cannot take new entries
(they would sit in its pending list, invisible to the new holder) nor acknowledge entries
whose effects the new holder's state does not contain. The state and the acknowledgement
are one step (a Lua script): after a crash every entry is either reflected in the
checkpointed state and acknowledged, or pending and replayed. All three keys of a
partition share the hash tag ``{p}``, so the scripts run on one Redis Cluster node.

The read's fence on a plain server or a Sentinel master is optimistic: ``WATCH`` the
leases, ``MGET`` them, then one ``MULTI`` with an ``XREADGROUP`` (and an ``XREVRANGE`` for
the last id, to block on when idle) per partition still ours. Redis aborts the ``EXEC``
if any watched lease was written or expired meanwhile, and the check is simply made
again. The read is sent, and its reply taken later (:class:`PendingRead`): under a
backlog the worker evaluates one batch while Redis prepares the next. The ``MULTI``
replaced a Lua script that checked the lease and called ``XREADGROUP``: inside Lua
every entry is converted to a Lua table and back, which cost the server about twice the
``XREADGROUP`` itself, on the cores the worker shares with it (``bench/rules.py``).

On a Cluster each partition is its own slot, and redis-py's cluster client refuses
transactions and scripts in a pipeline and Redis refuses a multi-key command across
slots: there the read is the Lua script, one call per partition, and the idle wait
blocks on one partition at a time (a share of the wait each, in turn), so an entry is
seen at most one wait (``block_ms``) late.

Entries reach the worker as ``(id, fields)`` with the fields as Redis sends them, a flat
``[k1, v1, k2, v2, ...]`` list, whichever way they were read: the plain read takes
``XREADGROUP``'s reply without redis-py's dict per entry (building and hashing those
was about a fifth of a worker's time), and ``core.model.Signal.from_flat`` reads the
collector's layout by position. Entries that do not decode go to
``core.keys.RULES_DEAD_LETTERS`` with their reason and are acknowledged with the next
checkpoint (that stream has no hash tag, so a crash between the two may dead-letter an
entry twice; never lose it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core import keys
from core.model import DecodeError

#: The Cluster read. KEYS[1] = partition lease, KEYS[2] = partition stream.
#: ARGV[1] = worker id (also its consumer name), ARGV[2] = group, ARGV[3] = count.
#: Returns false when the lease is not ours; else {entries, last_id}: the new entries as
#: XREADGROUP gives them, and when there are none the stream's last id (to block on).
READ_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[1], 'COUNT', ARGV[3],
                     'STREAMS', KEYS[2], '>')
if r then return {r[1][2], ''} end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then return {{}, last[1][1]} end
return {{}, '0-0'}
"""

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

#: A stream entry: its id and its fields.
Entry = tuple[str, list[str]]
#: A partition's read: its new entries, and when there are none the stream's last id.
Batch = tuple[list[Entry], str]

#: Cap of the dead-letter stream (approximate): enough to investigate, bounded.
DEAD_LETTER_MAXLEN = 100_000


class PartitionStream:
    """The Redis operations of one worker on the partitions it holds."""

    def __init__(self, redis: Any, worker_id: str, group: str = keys.RULES_GROUP) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.group = group
        self._read = redis.register_script(READ_LUA)
        self._checkpoint = redis.register_script(CHECKPOINT_LUA)
        self.cluster = isinstance(redis, RedisCluster)
        # The plain read's own connection (from the client's pool, held while this lives):
        # its replies are read raw, and one may be in flight (see send_read).
        self._conn: Any = None
        #: Where the next idle wait on a Cluster starts, so no partition is always last.
        self._turn = 0

    def ensure_group(self, p: int) -> None:
        """Create the consumer group (from the start of the stream) if it is missing."""
        try:
            self.redis.xgroup_create(keys.signal_stream(p), self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, partitions: list[int], count: int) -> dict[int, Batch | None]:
        """New entries of each partition (None: lease lost), and the last id when none."""
        return self.send_read(partitions, count).result()

    def send_read(self, partitions: list[int], count: int) -> PendingRead:
        """Check the leases and send the read without waiting for its reply.

        The caller evaluates the batch it has while Redis prepares the next one, on the
        other core (``read_once`` in ``rules/worker.py``), then takes it with
        :meth:`PendingRead.result`. One read at a time is in flight: the next is sent
        only after the previous one's result was taken.
        """
        if self.cluster:
            answer = self._read_scripted(partitions, count)
            return PendingRead(self, None, partitions, count, [], 0, answer)
        conn = self._connection()
        leases = [keys.rules_lease(p) for p in partitions]
        try:
            holders = self._holders(conn, leases)
            ours = [p for p, h in zip(partitions, holders, strict=True) if h == self.worker_id]
            commands: list[tuple[Any, ...]] = [("MULTI",)]
            for p in ours:
                stream = keys.signal_stream(p)
                commands.append(
                    ("XREADGROUP", "GROUP", self.group, self.worker_id, "COUNT", count,
                     "STREAMS", stream, ">")
                )  # fmt: skip
                commands.append(("XREVRANGE", stream, "+", "-", "COUNT", 1))
            commands.append(("EXEC",))
            # No health check: it would read this connection's replies as its own.
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        except BaseException:
            self.abandon()  # whatever was sent is answered on a connection we drop
            raise
        return PendingRead(self, conn, partitions, count, ours, len(commands), None)

    def _holders(self, conn: Any, leases: list[str]) -> list[str | None]:
        """``WATCH`` the leases and read who holds each (one round trip)."""
        conn.send_packed_command(conn.pack_commands([("WATCH", *leases), ("MGET", *leases)]))
        conn.read_response()
        return list(conn.read_response())

    def _receive(self, pending: PendingRead) -> dict[int, Batch | None] | None:
        """The reply of a read sent by :meth:`send_read`; None when Redis aborted it."""
        conn = pending.conn
        if conn is not self._conn:  # dropped since (abandon): its reply is gone with it
            raise RedisConnectionError("the read's connection was dropped before its reply")
        try:
            for _ in range(pending.replies - 1):
                conn.read_response()  # +OK of MULTI, +QUEUED of each command
            replies = conn.read_response()  # EXEC: None when a watched lease changed
        except BaseException:
            self.abandon()  # replies may be left unread: never read them as others'
            raise
        if replies is None:
            return None
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply  # the connection is in step: EXEC's reply was read whole
        out: dict[int, Batch | None] = dict.fromkeys(pending.partitions)
        for i, p in enumerate(pending.ours):
            got, last = _entries_of_reply(replies[2 * i]), replies[2 * i + 1]
            out[p] = (got, "") if got else ([], last[0][0] if last else "0-0")
        return out

    def abandon(self) -> None:
        """Drop the read's connection, and any read in flight on it: its entries stay
        pending, for whoever takes the partition next (:meth:`claim_pending`)."""
        if self._conn is not None:
            self._conn.disconnect()
            self.close()

    def close(self) -> None:
        """Give the read's connection back to the pool."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.redis.connection_pool.release(conn)

    def _connection(self) -> Any:
        """The connection reads go over: the worker's own, as a read may be in flight.

        Taken from the pool, which connects it to the current master (on Sentinel a
        connection reconnecting by itself would go back to its old address); after an
        error it is dropped, and the next read takes a new one the same way.
        """
        if self._conn is None:
            self._conn = self.redis.connection_pool.get_connection()
        return self._conn

    def _read_scripted(self, partitions: list[int], count: int) -> dict[int, Batch | None]:
        args = [self.worker_id, self.group, count]
        out: dict[int, Batch | None] = {}
        for p in partitions:
            reply = self._read(keys=[keys.rules_lease(p), keys.signal_stream(p)], args=args)
            if reply is None:
                out[p] = None
                continue
            out[p] = ([(entry_id, flat) for entry_id, flat in reply[0]], str(reply[1]))
        return out

    def wait(self, last_ids: dict[int, str], block_ms: int) -> None:
        """Block until any of the streams gets an entry after ``last_ids`` (or timeout)."""
        streams = [(keys.signal_stream(p), i or "0-0") for p, i in last_ids.items()]
        if not streams:
            return
        if not self.cluster:
            self.redis.xread(dict(streams), count=1, block=block_ms)
            return
        # One slot per XREAD on a Cluster: each partition in turn for its share of the
        # wait, stopping at the first with news (XREAD answers at once when it has some).
        share = max(1, block_ms // len(streams))
        start = self._turn % len(streams)
        self._turn += 1
        for stream, last in streams[start:] + streams[:start]:
            if self.redis.xread({stream: last}, count=1, block=share):
                return

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


class PendingRead:
    """A read sent by :meth:`PartitionStream.send_read`, its reply not yet taken."""

    __slots__ = ("_answer", "conn", "count", "ours", "partitions", "replies", "stream")

    def __init__(  # noqa: PLR0917 - the read's request, as sent
        self,
        stream: PartitionStream,
        conn: Any,
        partitions: list[int],
        count: int,
        ours: list[int],
        replies: int,
        answer: dict[int, Batch | None] | None,
    ) -> None:
        self.stream = stream
        self.conn = conn  # the connection it was sent on (None: answered already)
        self.partitions = partitions  # asked for
        self.count = count
        self.ours = ours  # ours at the check, read in the MULTI
        self.replies = replies  # replies the MULTI ... EXEC sends back
        self._answer = answer

    def result(self) -> dict[int, Batch | None]:
        """The batches of the read, waiting for them if need be.

        When a lease changed between the check and the read, Redis aborted the read
        (nothing was delivered) and it is made again, now, from the check.
        """
        if self._answer is not None:
            return self._answer
        got = self.stream._receive(self)
        while got is None:
            got = self.stream._receive(self.stream.send_read(self.partitions, self.count))
        self._answer = got
        return got


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair (``"1700000000000-3"`` -> ``(1700000000000, 3)``)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _entries_of_reply(response: Any, **_options: Any) -> list[Entry]:
    """One partition's ``XREADGROUP`` reply as ``[(id, flat fields), ...]``.

    RESP2 sends ``[[stream, entries]]``, RESP3 ``{stream: entries}``; nothing (no new
    entry) is ``None`` or empty in both.
    """
    if not response:
        return []
    streams = response.values() if isinstance(response, dict) else (s[1] for s in response)
    return [(entry[0], entry[1]) for entries in streams for entry in entries]


def _as_dict(flat: list[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=False))
