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

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import orjson
import redis

from collector.errors import SinkUnavailableError
from collector.metrics import CollectorMetrics
from collector.rows import XADD_SCRIPT, Row, encode_fields, row_rts, rows_size, signal_row
from collector.trim import Trimmer
from core import keys
from core.config.collector import SinkConfig
from core.lifecycle import Backoff
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)

Ack = Callable[[], None]

_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(rows: list[Row]) -> bytes | str:
    """The rows of a partition as XADD_SCRIPT's one argument: compact, UTF-8 as it is.

    Rows hold strings only, for which orjson writes the very text of ``json`` with
    ``ensure_ascii=False`` at about a fifth of its time (the batch's largest Python cost
    after the reader). A string orjson refuses (a lone surrogate from a server's text)
    goes through ``json``, as before.
    """
    try:
        return orjson.dumps(rows)
    except orjson.JSONEncodeError:
        return _json_dumps(rows)


__all__ = ["XADD_SCRIPT", "StreamSink", "encode_fields"]


@dataclass(slots=True)
class _Entry:
    """A run of one machine's signals (one message, usually), or one dead letter."""

    stream: str
    rows: list[Row]  # the signals (collector.rows); empty for dead letters and bare acks
    reader: str
    machine: str  # "" for dead letters
    ack: Ack | None = None  # runs once the whole run is written
    keep: bool = False  # an acknowledged message: never dropped (see _drop_oldest)
    fields: dict[str, str] | None = None  # a dead letter's fields
    maxlen: int = 0  # a dead letter's stream cap
    size: int = 1  # signals, as counted against buffer_max and batch_size


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
        self._buffered = 0  # signals in _buf (runs hold several)
        self._inflight: list[_Entry] = []
        self._inflight_size = 0
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
        if not signals:
            if ack is not None:
                # Nothing to write (a message without signals): acknowledge behind the
                # entries already queued so the broker's order of acks is kept.
                self._put([_Entry("", [], reader, "", ack, size=0)], 0)
            return
        # One run per machine in a row (a message is one machine, usually).
        runs: list[_Entry] = []
        machine = ""
        rows: list[Row] = []
        for s in signals:
            if s.machine != machine or not runs:
                machine = s.machine
                rows = []
                runs.append(_Entry(self.stream_for(machine), rows, reader, machine))
            rows.append(signal_row(s))
        for run in runs:
            run.size = len(run.rows)
            self._counter(self.metrics.received, reader, run.machine).inc(run.size)
        runs[-1].ack = ack
        if ack is not None:
            for run in runs:
                run.keep = True
        self._put(runs, len(signals))

    def submit_rows(
        self, reader: str, machine: str, rows: list[Row], ack: Ack | None = None
    ) -> None:
        """Queue one machine's signals as rows (:mod:`collector.rows`); as :meth:`submit`."""
        # One group (a snapshot message) is the common case: its size at a glance.
        n = len(rows[0][3]) if len(rows) == 1 and len(rows[0]) == 5 else rows_size(rows)
        if n:
            self._counter(self.metrics.received, reader, machine).inc(n)
            entry = _Entry(self.stream_for(machine), rows, reader, machine, ack, ack is not None)
        elif ack is not None:
            entry = _Entry("", [], reader, "", ack, size=0)
        else:
            return
        entry.size = n
        self._put([entry], n)

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
        entry = _Entry(keys.COLLECTOR_DEAD_LETTERS, [], reader, "", ack, fields=fields)
        entry.maxlen = self.cfg.dead_letter_max_len
        self._put([entry], 1)

    def _put(self, entries: list[_Entry], size: int) -> None:
        dropped: list[_Entry] = []
        with self._cond:
            self._buf.extend(entries)
            self._buffered += size
            over = self._buffered + self._inflight_size - self.cfg.buffer_max
            if over > 0:
                dropped = self._drop_oldest(over)
            if self._buffered == size or self._buffered >= self.cfg.batch_size:
                self._cond.notify()  # the writer waits for a first entry or a full batch
        if dropped:
            n = sum(e.size for e in dropped)
            self.dropped_total += n
            counts: Counter[tuple[str, str]] = Counter()
            for e in dropped:
                counts[e.reader, e.machine or "-"] += e.size
            for (reader, machine), c in counts.items():
                self.metrics.dropped.labels(reader, machine).inc(c)
            log.warning("collector_buffer_overflow", dropped=n)

    def _drop_oldest(self, n: int) -> list[_Entry]:
        """Drop the oldest entries (whole runs) holding at least ``n`` signals, if any.

        Entries of an acknowledged message (MQTT QoS 1) are kept: an unacknowledged
        message would hold one of the broker's in-flight slots until the next reconnect,
        and the broker bounds them anyway (``max_inflight`` per source), so the buffer can
        only exceed ``buffer_max`` by that much. Called with the condition held.
        """
        dropped: list[_Entry] = []
        kept: list[_Entry] = []
        gone = 0
        while gone < n and self._buf:
            e = self._buf.popleft()
            if e.keep:
                kept.append(e)
            else:
                dropped.append(e)
                gone += e.size
        self._buf.extendleft(reversed(kept))
        self._buffered -= gone
        return dropped

    @property
    def redis_ok(self) -> bool:
        """False while the last write to Redis failed."""
        return self._redis_ok

    @property
    def depth(self) -> int:
        """Signals (and dead letters) buffered or being written."""
        return self._buffered + self._inflight_size

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
            if self._buf and self._buffered < self.cfg.batch_size and self.cfg.linger_ms > 0:
                # Let a trickle become a batch: one round trip per message would cost
                # more than the few milliseconds a signal waits here.
                self._cond.wait(self.cfg.linger_ms / 1000.0)
            # Whole runs up to batch_size signals (at least one run).
            taken: list[_Entry] = []
            size = 0
            buf = self._buf
            while buf and (not taken or size + buf[0].size <= self.cfg.batch_size):
                e = buf.popleft()
                taken.append(e)
                size += e.size
            self._buffered -= size
            self._inflight = taken
            self._inflight_size = size

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
                    self._inflight_size = 0
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

    def _commands(self, batch: list[_Entry]) -> list[tuple[str | bytes, ...]]:
        # One XADD_SCRIPT call per partition stream: its rows in their order (so each
        # machine's order holds) as one JSON argument, one reply instead of one per
        # entry. Dead letters keep plain XADDs (with MAXLEN), the last-seen times one HSET.
        out: list[tuple[str | bytes, ...]] = []
        by_stream: dict[str, list[Row]] = {}
        last_seen: dict[str, str] = {}
        for e in batch:
            if e.rows:
                rows = by_stream.get(e.stream)
                if rows is None:
                    by_stream[e.stream] = list(e.rows)
                else:
                    rows.extend(e.rows)
                last_seen[e.machine] = row_rts(e.rows[-1])
            elif e.fields is not None:
                flat = [x for kv in e.fields.items() for x in kv]
                out.append(("XADD", e.stream, "MAXLEN", "~", str(e.maxlen), "*", *flat))
        for stream, rows in by_stream.items():
            out.append(("EVAL", XADD_SCRIPT, "1", stream, _dumps(rows)))
        if last_seen:
            out.append(
                ("HSET", keys.machine_last_seen(), *[x for kv in last_seen.items() for x in kv])
            )
        return out

    def _send(self, commands: list[tuple[str | bytes, ...]]) -> list[Any]:
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
        written: Counter[tuple[str, str]] = Counter()
        for e in batch:
            if e.rows:
                written[e.reader, e.machine] += e.size
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
