"""The stream sink: signals into the partitioned Redis streams, in order, never lost quietly.

Readers call :meth:`StreamSink.submit` from any thread (paho's network thread, the
asyncio loop) with a list of signals and an optional ``ack``. A writer thread takes
batches off a bounded buffer and writes each in one round trip (one XADD script call per
partition stream, plus the machines' last-seen times); only after the batch is in
Redis are the acks of its entries called, so an MQTT message is acknowledged to the
broker only once its signals are durable. While Redis is unreachable the batch stays at
the head of the buffer and is retried with backoff; new entries queue behind it, so the
order per machine holds. When the buffer is full the oldest waiting entries are dropped, counted
and logged, except those of acknowledged messages (MQTT QoS 1), which the broker already
bounds by its in-flight window.

With ``sink.wait_replicas`` set (Sentinel mode: the number of replicas), each batch ends
with ``WAIT <replicas> <timeout>`` on the connection that wrote it, and counts as written
only when that many replicas confirm it. Without it, a Sentinel failover loses what the
old master took after the promotion (thousands of acknowledged entries in
tests/deploy/test_sentinel.py); with it, an unconfirmed batch stays at the head of the
buffer and is written again, like a batch Redis refused.

Delivery is at least once: a batch that failed half-way (or was not confirmed) is written
again in full, and the rules engine's fingerprints make replays harmless.

Between batches the writer also beats the heartbeat and trims the partition streams
(:mod:`collector.trim`: never an entry the ``rules`` group still needs).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis

from collector.errors import SinkUnavailableError
from collector.metrics import CollectorMetrics
from collector.trim import Trimmer
from core import keys
from core.config.collector import SinkConfig
from core.lifecycle import Backoff
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)

Ack = Callable[[], None]


def encode_fields(signal: Signal) -> dict[str, str]:
    """Exactly :meth:`core.model.Signal.to_fields`, faster for the common values.

    ``json.dumps`` costs more than the rest of an entry for a plain number; for floats,
    ints, booleans and None the JSON text is ``repr``/``true``/``false``/``null``, which
    is what ``json.dumps`` itself writes. Anything else goes through ``to_fields``. A
    property test holds the two equal.
    """
    v = signal.value
    t = type(v)
    if t is float:
        if v - v != 0.0:  # type: ignore[operator]  # NaN and infinities: to_fields refuses
            return signal.to_fields()
        x = float.__repr__(v)
    elif t is int:
        x = int.__repr__(v)
    elif t is bool:
        x = "true" if v else "false"
    elif v is None:
        x = "null"
    else:
        return signal.to_fields()
    fields = {
        "v": "1",
        "m": signal.machine,
        "n": signal.name,
        "x": x,
        "q": signal.quality.value,
        "ts": repr(signal.source_ts),
        "rts": repr(signal.receive_ts),
    }
    if signal.subject:
        fields["s"] = signal.subject
    if signal.attrs:
        return signal.to_fields()  # attributes are JSON: leave them to the codec
    return fields


#: Append a run of entries to one partition stream, in order, with one reply.
#: KEYS[1] = the stream. ARGV = for each entry: the number of field/value items (2n),
#: then its n fields and values. Returns the number of entries added. EVAL rather than
#: EVALSHA: Redis caches the compiled script by its digest, and a restarted Redis (with
#: an empty script cache) never sees a NOSCRIPT in the middle of a batch.
XADD_SCRIPT = """
local i, n = 1, 0
while i <= #ARGV do
  local c = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + c))
  i = i + c + 1
  n = n + 1
end
return n
"""


@dataclass(slots=True)
class _Entry:
    stream: str
    fields: dict[str, str]
    reader: str
    machine: str  # "" for dead letters
    ack: Ack | None = None
    maxlen: int | None = None
    keep: bool = False  # part of an acknowledged message: never dropped (see _put)


class StreamSink:
    """Bounded buffer + writer thread + trimmer in front of the signal streams."""

    def __init__(
        self,
        client: Any,
        cfg: SinkConfig,
        metrics: CollectorMetrics,
        *,
        partitions: int,
        max_len: int,
        name: str = "collector",
        heartbeat_s: float = 5.0,
    ) -> None:
        if cfg.wait_replicas and getattr(client, "connection_pool", None) is None:
            # WAIT counts the writes of one connection; a Cluster pipeline spreads a batch
            # over one connection per master, so one WAIT cannot confirm it.
            raise ValueError(
                "collector.sink.wait_replicas needs a standalone or Sentinel Redis, not a Cluster"
            )
        self._redis = client
        self.cfg = cfg
        self.metrics = metrics
        self.partitions = partitions
        self.max_len = max_len
        self.name = name
        self.heartbeat_s = heartbeat_s
        self._buf: deque[_Entry] = deque()
        self._inflight: list[_Entry] = []
        self._cond = threading.Condition()
        self._stream_of: dict[str, str] = {}
        self._children: dict[tuple[int, str, str], Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trimmer = Trimmer(client, metrics, partitions=partitions, max_len=max_len)
        self._next_trim = 0.0
        self._next_heartbeat = 0.0
        self._redis_ok = True
        self.written_total = 0
        self.dropped_total = 0

    # --- producers (any thread) -------------------------------------------------------

    def stream_for(self, machine: str) -> str:
        stream = self._stream_of.get(machine)
        if stream is None:
            stream = keys.signal_stream(keys.partition_of(machine, self.partitions))
            self._stream_of[machine] = stream
        return stream

    def _counter(self, metric: Any, reader: str, machine: str) -> Any:
        # labels() takes a lock and builds a key on every call; at tens of thousands of
        # signals a second the children are worth keeping (machines are a bounded set).
        key = (id(metric), reader, machine)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(reader, machine)
        return child

    def submit(self, reader: str, signals: Sequence[Signal], ack: Ack | None = None) -> None:
        """Queue signals for writing; ``ack`` runs once they (and all before) are written."""
        stream_for = self.stream_for
        entries = [
            _Entry(stream_for(s.machine), encode_fields(s), reader, s.machine) for s in signals
        ]
        if signals:
            machine = signals[0].machine
            if all(s.machine == machine for s in signals):  # one machine per message, usually
                self._counter(self.metrics.received, reader, machine).inc(len(signals))
            else:
                for machine, n in Counter(s.machine for s in signals).items():
                    self._counter(self.metrics.received, reader, machine).inc(n)
        if not entries:
            if ack is not None:
                # Nothing to write (a message without signals): acknowledge behind the
                # entries already queued so the broker's order of acks is kept.
                entries = [_Entry("", {}, reader, "", ack)]
            else:
                return
        else:
            entries[-1].ack = ack
            if ack is not None:
                for e in entries:
                    e.keep = True
        self._put(entries)

    def dead_letter(
        self,
        reader: str,
        *,
        source: str,
        reason: str,
        error: str,
        where: str,
        payload: bytes,
        ack: Ack | None = None,
    ) -> None:
        """Queue a payload that did not decode: why, where from, its raw bytes (truncated)."""
        limit = self.cfg.dead_letter_payload_bytes
        fields = {
            "reason": reason,
            "error": error[:500],
            "reader": reader,
            "source": source,
            "where": where[:500],
            "payload": payload[:limit].decode("utf-8", errors="replace"),
            "size": str(len(payload)),
            "ts": repr(time.time()),
        }
        self.metrics.dead_letters.labels(reader, reason).inc()
        log.warning("collector_dead_letter", reader=reader, source=source, reason=reason)
        entry = _Entry(keys.COLLECTOR_DEAD_LETTERS, fields, reader, "", ack)
        entry.maxlen = self.cfg.dead_letter_max_len
        self._put([entry])

    def _put(self, entries: list[_Entry]) -> None:
        dropped: list[_Entry] = []
        with self._cond:
            self._buf.extend(entries)
            over = len(self._buf) + len(self._inflight) - self.cfg.buffer_max
            if over > 0:
                dropped = self._drop_oldest(over)
            depth = len(self._buf)
            if depth == len(entries) or depth >= self.cfg.batch_size:
                self._cond.notify()  # the writer waits for a first entry or a full batch
        if dropped:
            self.dropped_total += len(dropped)
            for (reader, machine), n in Counter((e.reader, e.machine) for e in dropped).items():
                self.metrics.dropped.labels(reader, machine or "-").inc(n)
            log.warning("collector_buffer_overflow", dropped=len(dropped))

    def _drop_oldest(self, n: int) -> list[_Entry]:
        """Drop up to ``n`` of the oldest entries that nobody waits an ack for.

        Entries of an acknowledged message (MQTT QoS 1) are kept: an unacknowledged
        message would hold one of the broker's in-flight slots until the next reconnect,
        and the broker bounds them anyway (``max_inflight`` per source), so the buffer can
        only exceed ``buffer_max`` by that much. Called with the condition held.
        """
        dropped: list[_Entry] = []
        kept: list[_Entry] = []
        while len(dropped) < n and self._buf:
            e = self._buf.popleft()
            (kept if e.keep else dropped).append(e)
        self._buf.extendleft(reversed(kept))
        return dropped

    @property
    def redis_ok(self) -> bool:
        """False while the last write to Redis failed."""
        return self._redis_ok

    @property
    def depth(self) -> int:
        return len(self._buf) + len(self._inflight)

    # --- the writer thread ------------------------------------------------------------

    def start(self) -> StreamSink:
        self._thread = threading.Thread(target=self._run, name="stream-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed within ``timeout``, then stop the writer."""
        self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, timeout))

    def flush(self, timeout: float) -> bool:
        """Wait until every queued entry is written (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self.depth:
            if time.monotonic() > deadline:
                return False
            with self._cond:
                self._cond.wait(0.01)
        return True

    def _take(self) -> None:
        with self._cond:
            if not self._buf and not self._stop.is_set():
                self._cond.notify_all()  # wake flush() waiters: the buffer is empty
                due = min(self._next_trim, self._next_heartbeat) - time.monotonic()
                self._cond.wait(min(0.5, max(0.0, due)))
            if 0 < len(self._buf) < self.cfg.batch_size and self.cfg.linger_ms > 0:
                # Let a trickle become a batch: one round trip per message would cost
                # more than the few milliseconds a signal waits here.
                self._cond.wait(self.cfg.linger_ms / 1000.0)
            n = min(self.cfg.batch_size, len(self._buf))
            self._inflight = [self._buf.popleft() for _ in range(n)]

    def _run(self) -> None:
        backoff = Backoff(base_s=0.1, cap_s=self.cfg.retry_max_s)
        while True:
            if not self._inflight:
                if self._stop.is_set() and not self._buf:
                    return
                self._take()
            try:
                if self._inflight:
                    self._write(self._inflight)
                    self._inflight = []
                self._housekeeping()
            except Exception as exc:  # Redis errors above all; any other keeps the batch too
                self.metrics.redis_errors.inc()
                if self._redis_ok:
                    log.warning(
                        "collector_redis_unavailable",
                        error=str(exc) or type(exc).__name__,
                        buffered=self.depth,
                    )
                self._redis_ok = False
                if self._stop.wait(backoff.next()):
                    return  # stopping while Redis is away: what is buffered is lost
                continue
            if not self._redis_ok:
                log.info("collector_redis_back", buffered=self.depth)
                self._redis_ok = True
            backoff.reset()
            self.metrics.buffer.set(self.depth)

    def _commands(self, batch: list[_Entry]) -> list[tuple[str, ...]]:
        # One XADD_SCRIPT call per partition stream: its entries in their order (so each
        # machine's order holds), one reply instead of one per entry. Dead letters keep
        # plain XADDs (with MAXLEN), the last-seen times one HSET.
        out: list[tuple[str, ...]] = []
        by_stream: dict[str, list[str]] = {}
        last_seen: dict[str, str] = {}
        for e in batch:
            if not e.stream:
                continue
            if e.maxlen is None:
                args = by_stream.get(e.stream)
                if args is None:
                    args = by_stream[e.stream] = []
                args.append(str(2 * len(e.fields)))
                for kv in e.fields.items():
                    args.extend(kv)
                last_seen[e.machine] = e.fields["rts"]
            else:
                flat = [x for kv in e.fields.items() for x in kv]
                out.append(("XADD", e.stream, "MAXLEN", "~", str(e.maxlen), "*", *flat))
        for stream, args in by_stream.items():
            out.append(("EVAL", XADD_SCRIPT, "1", stream, *args))
        if last_seen:
            out.append(
                ("HSET", keys.machine_last_seen(), *[x for kv in last_seen.items() for x in kv])
            )
        return out

    def _send(self, commands: list[tuple[str, ...]]) -> list[Any]:
        """One round trip for the batch.

        With a plain or Sentinel client the commands are packed by hiredis and written on
        one pooled connection, replies read back in order: redis-py's pipeline spends most
        of its time re-checking and packing arguments that are already strings, and this
        path is what lets one collector carry a plant. A Cluster client (no single
        connection pool) uses its pipeline, which splits the batch by slot.
        """
        if not commands:
            return []
        pool = getattr(self._redis, "connection_pool", None)
        if pool is None:
            pipe = self._redis.pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)
            return list(pipe.execute())
        conn = pool.get_connection()
        try:
            # hiredis's stub types the argument as a 1-tuple; it takes any tuple of args.
            packed = [hiredis.pack_command(c) for c in commands]  # type: ignore[arg-type]
            conn.send_packed_command([b"".join(packed)])  # one write, not one per command
            errors = []
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:  # read every reply, then fail the batch
                    errors.append(exc)
            if errors:
                raise errors[0]
            return replies
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse the connection
            raise
        finally:
            pool.release(conn)

    def _write(self, batch: list[_Entry]) -> None:
        started = time.perf_counter()
        commands = self._commands(batch)
        need = self.cfg.wait_replicas
        if need and commands:
            # Last on the same connection: WAIT covers every write of the batch before it.
            commands.append(("WAIT", str(need), str(self.cfg.wait_timeout_ms)))
        replies = self._send(commands)
        if need and commands and int(replies[-1]) < need:
            raise SinkUnavailableError(
                f"WAIT: {replies[-1]} of {need} replicas confirmed the batch within "
                f"{self.cfg.wait_timeout_ms} ms",
                reason="replicas",
            )
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        written = Counter((e.reader, e.machine) for e in batch if e.machine)
        for (reader, machine), n in written.items():
            self._counter(self.metrics.written, reader, machine).inc(n)
        self.written_total += sum(written.values())
        for e in batch:
            if e.ack is not None:
                try:
                    e.ack()
                except Exception as exc:  # an ack that fails must not stop the writer
                    log.warning("collector_ack_failed", reader=e.reader, error=str(exc))

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_s
            key = keys.collector_heartbeat(self.name)
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(
                key,
                mapping={
                    "ts": repr(time.time()),
                    "buffered": str(self.depth),
                    "written": str(self.written_total),
                    "dropped": str(self.dropped_total),
                },
            )
            pipe.expire(key, max(1, int(self.heartbeat_s * 3)))
            pipe.execute()
        if now >= self._next_trim:
            self._next_trim = now + self.cfg.trim_interval_s
            self.trim()

    def trim(self) -> int:
        """Trim every partition stream once; entries removed."""
        return self._trimmer.trim(self.cfg.retention_s)
