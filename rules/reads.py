"""How a rules worker reads its partitions: one transport per Redis topology, chosen once.

A read is fenced by the partitions' leases: a worker that lost a lease while paused must
not take new entries (they would sit in its pending list, invisible to the new holder).
Both transports answer the same way: per partition asked for, its new entries and, when
there are none, the stream's last id (to block on), or None when the lease is not ours.
:func:`read_transport` picks one when the stream is built; nothing else asks which
topology it is on.

- :class:`FencedReads` (a plain server, a Sentinel master): optimistic. ``WATCH`` the
  leases, ``MGET`` them, then one ``MULTI`` with an ``XREADGROUP`` (and an ``XREVRANGE``
  for the last id) per partition still ours. Redis aborts the ``EXEC`` if any watched
  lease was written or expired meanwhile, and the check is simply made again. The read is
  sent on the transport's own connection and its reply taken later (:class:`InFlightRead`):
  under a backlog the worker evaluates one batch while Redis prepares the next. The
  ``MULTI`` replaced a Lua script doing the same: inside Lua every entry is converted to a
  Lua table and back, which cost the server about twice the ``XREADGROUP`` itself, on the
  cores the worker shares with it (``bench/rules.py``). Its reply is read raw, without
  redis-py's dict per entry (building and hashing those was about a fifth of a worker's
  time).
- :class:`ScriptedReads` (a Cluster): each partition is its own slot, redis-py's cluster
  client refuses transactions and scripts in a pipeline, and Redis refuses a multi-key
  command across slots: the read is a Lua script, one call per partition, answered at
  once (:class:`AnsweredRead`), and the idle wait blocks on one partition at a time (a
  share of the wait each, in turn), so an entry is seen at most one wait late.

Entries are ``(id, fields)`` with the fields as Redis sends them, a flat
``[k1, v1, k2, v2, ...]`` list, which ``core.model.Signal.from_flat`` reads by position.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.typing import KeyT, StreamIdT

from core import keys
from core.redis import PooledRedis, RedisCommands

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

#: A stream entry: its id and its fields.
Entry = tuple[str, list[str]]
#: A partition's read: its new entries, and when there are none the stream's last id.
Batch = tuple[list[Entry], str]
#: A read's answer by partition (None: the lease is not ours).
Answer = dict[int, Batch | None]


class PendingRead(Protocol):
    """A read sent, its reply not necessarily taken yet."""

    def result(self) -> Answer:
        """The batches of the read, waiting for them if need be."""
        ...


class ReadTransport(Protocol):
    """Reading the partitions a worker holds, on one Redis topology.

    Built once per :class:`rules.stream.PartitionStream`; ``send`` is called every loop
    iteration, with at most one read in flight (the next is sent only after the previous
    one's result was taken); ``wait`` when the worker is idle; ``abandon`` after a Redis
    error (a read in flight is dropped: its entries stay pending for the next holder);
    ``close`` when the worker stops. Redis errors propagate to the worker's loop.
    """

    def send(self, partitions: list[int], count: int) -> PendingRead: ...

    def wait(self, last_ids: dict[int, str], block_ms: int) -> None: ...

    def abandon(self) -> None: ...

    def close(self) -> None: ...


def read_transport(redis: RedisCommands, worker_id: str, group: str) -> ReadTransport:
    """The transport of ``redis``'s topology."""
    if isinstance(redis, RedisCluster):
        return ScriptedReads(redis, worker_id, group)
    # Anything else is a plain server's or a Sentinel master's client: a redis.Redis.
    return FencedReads(cast("PooledRedis", redis), worker_id, group)


class AnsweredRead:
    """A read whose answer came with the call."""

    __slots__ = ("answer",)

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def result(self) -> Answer:
        return self.answer


class FencedReads:
    """``WATCH`` + ``MULTI`` reads on a connection of its own (a plain server, Sentinel)."""

    def __init__(self, redis: PooledRedis, worker_id: str, group: str) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.group = group
        # The reads' own connection (from the client's pool, held while this lives): its
        # replies are read raw, and one may be in flight.
        self._conn: Any = None

    def send(self, partitions: list[int], count: int) -> InFlightRead:
        """Check the leases and send the read without waiting for its reply."""
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
        return InFlightRead(self, conn, partitions, count, ours, len(commands))

    def _holders(self, conn: Any, leases: list[str]) -> list[str | None]:
        """``WATCH`` the leases and read who holds each (one round trip).

        ``ROLE`` first: around a failover a sentinel that has not yet seen it may give the
        old master's address, and the old master comes back as a replica. There ``WATCH``
        and ``MGET`` work, and say every lease is someone else's (or nobody's), round after
        round, while this worker's writes go to the new master: a read that reaches a
        replica is an error, and the next one takes a new connection (decision 0460).
        """
        conn.send_packed_command(
            conn.pack_commands([("ROLE",), ("WATCH", *leases), ("MGET", *leases)])
        )
        role = conn.read_response()
        conn.read_response()
        holders = list(conn.read_response())
        if not role or role[0] not in ("master", b"master"):
            raise RedisConnectionError(
                f"the reads' connection reached a {role[0] if role else '?'}"
            )
        return holders

    def receive(self, read: InFlightRead) -> Answer | None:
        """The reply of a read sent by :meth:`send`; None when Redis aborted it."""
        conn = read.conn
        if conn is not self._conn:  # dropped since (abandon): its reply is gone with it
            raise RedisConnectionError("the read's connection was dropped before its reply")
        try:
            for _ in range(read.replies - 1):
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
        out: Answer = dict.fromkeys(read.partitions)
        for i, p in enumerate(read.ours):
            got, last = _entries_of_reply(replies[2 * i]), replies[2 * i + 1]
            out[p] = (got, "") if got else ([], last[0][0] if last else "0-0")
        return out

    def wait(self, last_ids: dict[int, str], block_ms: int) -> None:
        """Block until any of the streams gets an entry after ``last_ids`` (or timeout)."""
        streams: dict[KeyT, StreamIdT] = {
            keys.signal_stream(p): i or "0-0" for p, i in last_ids.items()
        }
        if streams:
            self.redis.xread(streams, count=1, block=block_ms)

    def abandon(self) -> None:
        """Drop the connection, and any read in flight on it: its entries stay pending,
        for whoever takes the partition next (``PartitionStream.claim_pending``)."""
        if self._conn is not None:
            self._conn.disconnect()
            self.close()

    def close(self) -> None:
        """Give the connection back to the pool."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.redis.connection_pool.release(conn)

    def _connection(self) -> Any:
        """The connection reads go over: its own, as a read may be in flight.

        Taken from the pool, which connects it to the current master (on Sentinel a
        connection reconnecting by itself would go back to its old address); after an
        error it is dropped, and the next read takes a new one the same way.
        """
        if self._conn is None:
            self._conn = self.redis.connection_pool.get_connection()
        return self._conn


class InFlightRead:
    """A read sent by :meth:`FencedReads.send`, its reply not yet taken."""

    __slots__ = ("_answer", "conn", "count", "ours", "partitions", "replies", "transport")

    def __init__(  # noqa: PLR0917 - the read's request, as sent
        self,
        transport: FencedReads,
        conn: Any,
        partitions: list[int],
        count: int,
        ours: list[int],
        replies: int,
    ) -> None:
        self.transport = transport
        self.conn = conn  # the connection it was sent on
        self.partitions = partitions  # asked for
        self.count = count
        self.ours = ours  # ours at the check, read in the MULTI
        self.replies = replies  # replies the MULTI ... EXEC sends back
        self._answer: Answer | None = None

    def result(self) -> Answer:
        """The batches of the read, waiting for them if need be.

        When a lease changed between the check and the read, Redis aborted the read
        (nothing was delivered) and it is made again, now, from the check.
        """
        if self._answer is not None:
            return self._answer
        transport = self.transport
        got = transport.receive(self)
        while got is None:
            got = transport.receive(transport.send(self.partitions, self.count))
        self._answer = got
        return got


class ScriptedReads:
    """One Lua read per partition, answered at once (a Cluster)."""

    def __init__(self, redis: RedisCommands, worker_id: str, group: str) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.group = group
        self._read = redis.register_script(READ_LUA)
        #: Where the next idle wait starts, so no partition is always last.
        self._turn = 0

    def send(self, partitions: list[int], count: int) -> AnsweredRead:
        args = [self.worker_id, self.group, count]
        out: Answer = {}
        for p in partitions:
            reply = self._read(keys=[keys.rules_lease(p), keys.signal_stream(p)], args=args)
            if reply is None:
                out[p] = None
                continue
            out[p] = ([(entry_id, flat) for entry_id, flat in reply[0]], str(reply[1]))
        return AnsweredRead(out)

    def wait(self, last_ids: dict[int, str], block_ms: int) -> None:
        """Each partition in turn for its share of the wait (one slot per ``XREAD``),
        stopping at the first with news (``XREAD`` answers at once when it has some)."""
        streams = [(keys.signal_stream(p), i or "0-0") for p, i in last_ids.items()]
        if not streams:
            return
        share = max(1, block_ms // len(streams))
        start = self._turn % len(streams)
        self._turn += 1
        for stream, last in streams[start:] + streams[:start]:
            if self.redis.xread({stream: last}, count=1, block=share):
                return

    def abandon(self) -> None:
        """Nothing is ever in flight."""

    def close(self) -> None:
        """No connection of its own."""


def _entries_of_reply(response: Any, **_options: Any) -> list[Entry]:
    """One partition's ``XREADGROUP`` reply as ``[(id, flat fields), ...]``.

    RESP2 sends ``[[stream, entries]]``, RESP3 ``{stream: entries}``; nothing (no new
    entry) is ``None`` or empty in both.
    """
    if not response:
        return []
    streams = response.values() if isinstance(response, dict) else (s[1] for s in response)
    return [(entry[0], entry[1]) for entries in streams for entry in entries]
