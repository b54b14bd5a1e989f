"""The stream sink: signals into the partitioned Redis streams, in order, never lost quietly.

Readers call :meth:`StreamSink.submit` from any thread (paho's network thread, the
asyncio loop) with a list of signals and an optional ``ack``. A writer thread takes
batches off a bounded buffer and writes each in one round trip (one XADD script call per
partition stream, plus the machines' last-seen times); only after the batch is in
Redis are the acks of its entries called, so an MQTT message is acknowledged to the
broker only once its signals are durable. While Redis is unreachable the batch stays at
the head of the buffer and is retried with backoff; new entries queue behind it, so the
order per machine holds. When the buffer is full the oldest waiting entries are dropped,
counted and logged, except those of acknowledged messages (MQTT QoS 1), which the broker
already bounds by its in-flight window.

With ``sink.wait_replicas`` set (Sentinel mode: the number of replicas), each batch ends
with ``WAIT <replicas> <timeout>`` on the connection that wrote it, and counts as written
only when that many replicas confirm it. Without it, a Sentinel failover loses what the
old master took after the promotion (thousands of acknowledged entries in
tests/deploy/test_sentinel.py); with it, an unconfirmed batch stays at the head of the
buffer and is written again, like a batch Redis refused.

The hand-off is the hot path (paho's thread, once per message, sharing one GIL with the
writer): an item is a tuple appended under a plain lock, the received count is a dict
addition (:class:`collector.metrics.SignalTally`), and a producer notifies only when the
writer waits for it (``_wake_at``: one signal while idle, a full batch while it
lingers). The written counts, the streams of the machines and their last-seen times are
worked out once per batch in the writer. The batch's encoding and round trip are in
:mod:`collector.batch`.

Delivery is at least once: a batch that failed half-way (or was not confirmed) is written
again in full, and the rules engine's fingerprints make replays harmless.

Between batches the writer also beats the heartbeat. The partition streams are trimmed
(:mod:`collector.trim`: never an entry the ``rules`` group still needs) by a thread of
their own, every partition in one round trip: between batches, a round trip per
partition held the writes (and so every signal arriving then) for about 100 ms on a
busy machine, the end-to-end latency's p99
(docs/decisions/0451-collector-trim-off-the-write-path.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from collector.batch import dumps_rows, send_batch
from collector.errors import SinkUnavailableError
from collector.metrics import CollectorMetrics
from collector.rows import XADD_SCRIPT, Row, encode_fields, row_rts, rows_size, signal_row
from collector.throttle import LogThrottle
from collector.trim import Trimmer
from core import keys
from core.config.collector import SinkConfig
from core.lifecycle import Backoff
from core.logs import get_logger
from core.model import Signal
from core.redis import RedisCommands
from core.wire import GROUP_FIELDS

log = get_logger(__name__)

Ack = Callable[[], None]

__all__ = ["XADD_SCRIPT", "StreamSink", "encode_fields"]


#: One queued message, as a tuple (a class instance per message cost more than the rest
#: of the hand-off): ``(size, reader, machine, payload, ack)``. ``payload`` is the
#: machine's rows (collector.rows) or, for a dead letter (``machine`` ""), its fields;
#: ``size`` counts signals against ``buffer_max`` and ``batch_size`` (1 for a dead letter,
#: 0 for a bare ack); ``ack`` runs once the item (and every item before it) is written,
#: and an item with an ack is never dropped (see ``_drop_oldest``).
Item = tuple[int, str, str, list[Row] | dict[str, str], Ack | None]

#: One ``collector_dead_letter`` log line per reader and reason per this many seconds.
DEAD_LETTER_LOG_PERIOD_S = 60.0

#: A group row's length (collector.rows): one entry per name, not one.
_GROUP_LEN = len(GROUP_FIELDS)

#: ``_wake_at`` while the writer is not waiting: producers never notify.
_NEVER = 1 << 62


def _keep() -> None:
    """The ack of every item but the last of an acknowledged message: keeps it buffered."""


class StreamSink:
    """Bounded buffer + writer thread + trimmer in front of the signal streams."""

    def __init__(
        self,
        client: RedisCommands,
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
        # The hand-off: producers append under a plain lock (no Condition method calls,
        # no notify unless the writer waits for them: see _wake_at); the writer takes
        # whole items off the left.
        self._buf: deque[Item] = deque()
        self._buffered = 0  # signals in _buf
        self._inflight: list[Item] = []
        self._inflight_size = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # the writer waits on it
        #: Buffered signals at which a producer wakes the writer: 1 while it waits for
        #: work, a full batch while it lingers, never while it writes.
        self._wake_at = _NEVER
        self._idle = threading.Condition()  # flush() waits on it; the writer notifies
        #: The writer's longest sleep with nothing to do (then it looks at stop, heartbeat
        #: and trim); a producer wakes it sooner.
        self.idle_wait_s = 0.5
        self._stream_of: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dead_letter_log = LogThrottle(DEAD_LETTER_LOG_PERIOD_S)
        self._trimmer = Trimmer(client, metrics, partitions=partitions, max_len=max_len)
        self._trim_thread: threading.Thread | None = None
        self._trim_failures = LogThrottle(DEAD_LETTER_LOG_PERIOD_S)
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

    def submit(self, reader: str, signals: Sequence[Signal], ack: Ack | None = None) -> None:
        """Queue signals for writing; ``ack`` runs once they (and all before) are written."""
        # One item per machine in a row (a message is one machine, usually); the ack
        # rides on the last, and every item of an acknowledged message is kept.
        items: list[Item] = []
        machine = ""
        rows: list[Row] = []
        for s in signals:
            if s.machine != machine or not rows:
                if rows:
                    items.append((len(rows), reader, machine, rows, ack))
                machine = s.machine
                rows = []
            rows.append(signal_row(s))
        if rows:
            items.append((len(rows), reader, machine, rows, ack))
        if not items:
            if ack is not None:  # acknowledge behind what is queued: the broker's order
                self._put([(0, reader, "", [], ack)])
            return
        if ack is not None:  # only the last acknowledges; a no-op keeps the others
            items[:-1] = [(n, r, m, p, _keep) for n, r, m, p, _ in items[:-1]]
        self._put(items)

    def submit_rows(
        self, reader: str, machine: str, rows: list[Row], ack: Ack | None = None
    ) -> None:
        """Queue one machine's signals as rows (:mod:`collector.rows`); as :meth:`submit`.

        The MQTT reader's hot path, once per message on paho's thread: one tuple, one
        lock, a dict count; no metric call, no notify unless the writer waits.
        """
        # One group (a snapshot message) is the common case: its size at a glance.
        n = len(rows[0][3]) if len(rows) == 1 and len(rows[0]) == 5 else rows_size(rows)
        if not n:
            if ack is not None:
                self._put([(0, reader, "", [], ack)])
            return
        counts = self.metrics.received.counts
        key = (reader, machine)
        with self._lock:
            self._buf.append((n, reader, machine, rows, ack))
            self._buffered += n
            counts[key] = counts.get(key, 0) + n
            if self._buffered + self._inflight_size > self.cfg.buffer_max:
                self._overflow()
            if self._buffered >= self._wake_at:
                self._cond.notify()

    def submit_groups(
        self,
        reader: str,
        groups: list[tuple[str, list[Row]]],
        ack: Ack | None = None,
        *,
        keep_all: bool = True,
    ) -> None:
        """Queue several machines' rows, in order, under one lock; ``ack`` rides on the last.

        For a reader that decodes many messages per wake-up (the UDP reader drains its
        socket): one hand-off instead of one per message. As with :meth:`submit`, the
        other items of an acknowledged hand-off are kept (``_keep``), never dropped;
        ``keep_all=False`` leaves them droppable when the ack is not a broker's (UDP's
        run-state save: nothing upstream bounds what it would keep).
        """
        if not groups:
            if ack is not None:
                self._put([(0, reader, "", [], ack)])
            return
        others = _keep if ack is not None and keep_all else None
        last = len(groups) - 1
        self._put(
            [
                (
                    # A single full row (a datagram's, say) at a glance.
                    1 if len(rows) == 1 and len(rows[0]) != _GROUP_LEN else rows_size(rows),
                    reader,
                    machine,
                    rows,
                    ack if i == last else others,
                )
                for i, (machine, rows) in enumerate(groups)
            ]
        )

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
        # Counted always, logged once per reason a minute (collector.throttle).
        suppressed = self._dead_letter_log.admit(f"{reader}:{reason}")
        if suppressed is not None:
            log.warning(
                "collector_dead_letter",
                reader=reader,
                source=source,
                reason=reason,
                error=error[:200],
                where=where[:200],
                suppressed=suppressed,
            )
        self._put([(1, reader, "", fields, ack)])

    def _put(self, items: list[Item]) -> None:
        """Queue items (the general path; :meth:`submit_rows` inlines it)."""
        counts = self.metrics.received.counts
        with self._lock:
            for item in items:
                self._buf.append(item)
                n, reader, machine, _, _ = item
                self._buffered += n
                if n and machine:
                    key = (reader, machine)
                    counts[key] = counts.get(key, 0) + n
            if self._buffered + self._inflight_size > self.cfg.buffer_max:
                self._overflow()
            if self._buffered >= self._wake_at:
                self._cond.notify()

    def _overflow(self) -> None:
        """Drop the oldest items over ``buffer_max``; count and log them. Lock held."""
        dropped = self._drop_oldest(self._buffered + self._inflight_size - self.cfg.buffer_max)
        if not dropped:
            return
        n = 0
        for size, reader, machine, _, _ in dropped:
            n += size
            self.metrics.dropped.add(reader, machine or "-", size)
        self.dropped_total += n
        log.warning("collector_buffer_overflow", dropped=n)

    def _drop_oldest(self, n: int) -> list[Item]:
        """Drop the oldest items (whole messages) holding at least ``n`` signals, if any.

        Items of an acknowledged message (MQTT QoS 1) are kept: an unacknowledged
        message would hold one of the broker's in-flight slots until the next reconnect,
        and the broker bounds them anyway (``max_inflight`` per source), so the buffer can
        only exceed ``buffer_max`` by that much. Called with the lock held.
        """
        dropped: list[Item] = []
        kept: list[Item] = []
        gone = 0
        while gone < n and self._buf:
            item = self._buf.popleft()
            if item[4] is not None:
                kept.append(item)
            else:
                dropped.append(item)
                gone += item[0]
        self._buf.extendleft(reversed(kept))
        self._buffered -= gone
        return dropped

    @property
    def redis_ok(self) -> bool:
        """False while the last write to Redis failed."""
        return self._redis_ok

    @property
    def alive(self) -> bool:
        """False when the writer thread ended without being stopped (nothing is written)."""
        thread = self._thread
        return thread is None or thread.is_alive() or self._stop.is_set()

    @property
    def depth(self) -> int:
        """Signals (and dead letters) buffered or being written."""
        return self._buffered + self._inflight_size

    # --- the writer thread ------------------------------------------------------------

    def start(self) -> StreamSink:
        self._thread = threading.Thread(target=self._run, name="stream-sink", daemon=True)
        self._thread.start()
        self._trim_thread = threading.Thread(
            target=self._trim_loop, name="stream-trim", daemon=True
        )
        self._trim_thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed within ``timeout``, then stop the writer."""
        self.flush(timeout)
        self._stop.set()
        with self._lock:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, timeout))
        if self._trim_thread is not None:
            self._trim_thread.join(timeout=max(1.0, timeout))

    def flush(self, timeout: float) -> bool:
        """Wait until every queued item is written (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self.depth:
            if time.monotonic() > deadline:
                return False
            with self._idle:
                self._idle.wait(0.01)
        return True

    def _wait(self, seconds: float, wake_at: int) -> None:
        """Sleep up to ``seconds``, or until producers buffered ``wake_at`` signals. Lock held."""
        if self._buffered < wake_at and not self._stop.is_set():
            self._wake_at = wake_at
            self._cond.wait(seconds)
            self._wake_at = _NEVER

    def _take(self) -> None:
        if not self._buf and not self._stop.is_set():
            with self._idle:
                self._idle.notify_all()  # wake flush() waiters: the buffer is empty
        batch_size = self.cfg.batch_size
        with self._lock:
            if not self._buf:
                due = self._next_heartbeat - time.monotonic()
                self._wait(min(self.idle_wait_s, max(0.0, due)), 1)
            if self._buf and self._buffered < batch_size and self.cfg.linger_ms > 0:
                # Let a trickle become a batch: one round trip per message would cost
                # more than the few milliseconds a signal waits here.
                self._wait(self.cfg.linger_ms / 1000.0, batch_size)
            # Whole items up to batch_size signals (at least one).
            taken: list[Item] = []
            size = 0
            buf = self._buf
            while buf and (not taken or size + buf[0][0] <= batch_size):
                item = buf.popleft()
                taken.append(item)
                size += item[0]
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
                # What waits is what Redis has not taken: the gauge says so during the outage.
                self.metrics.buffer.set(self.depth)
                if self._stop.wait(backoff.next()):
                    return  # stopping while Redis is away: what is buffered is lost
                continue
            if not self._redis_ok:
                log.info("collector_redis_back", buffered=self.depth)
                self._redis_ok = True
            backoff.reset()
            self.metrics.buffer.set(self.depth)

    def _commands(
        self, batch: list[Item]
    ) -> tuple[list[tuple[str | bytes, ...]], dict[tuple[str, str], int]]:
        """The batch's commands, and its signals by (reader, machine) to count once written.

        One XADD_SCRIPT call per partition stream: its rows in their order (so each
        machine's order holds) as one JSON argument, one reply instead of one per item.
        Dead letters keep plain XADDs (with MAXLEN), the last-seen times one HSET.
        """
        out: list[tuple[str | bytes, ...]] = []
        by_stream: dict[str, list[Row]] = {}
        last_row: dict[str, Row] = {}
        written: dict[tuple[str, str], int] = {}
        stream_of = self._stream_of
        for n, reader, machine, payload, _ in batch:
            if not n:
                continue  # a bare ack
            if isinstance(payload, dict):  # a dead letter
                flat = [x for kv in payload.items() for x in kv]
                maxlen = str(self.cfg.dead_letter_max_len)
                out.append(("XADD", keys.COLLECTOR_DEAD_LETTERS, "MAXLEN", "~", maxlen, "*", *flat))
                continue
            stream = stream_of.get(machine) or self.stream_for(machine)
            rows = by_stream.get(stream)
            if rows is None:
                by_stream[stream] = list(payload)
            else:
                rows.extend(payload)
            last_row[machine] = payload[-1]
            key = (reader, machine)
            written[key] = written.get(key, 0) + n
        for stream, rows in by_stream.items():
            out.append(("EVAL", XADD_SCRIPT, "1", stream, dumps_rows(rows)))
        if last_row:
            seen = [x for m, row in last_row.items() for x in (m, row_rts(row))]
            out.append(("HSET", keys.machine_last_seen(), *seen))
        return out, written

    def _write(self, batch: list[Item]) -> None:
        started = time.perf_counter()
        commands, written = self._commands(batch)
        need = self.cfg.wait_replicas
        if need and commands:
            # Last on the same connection: WAIT covers every write of the batch before it.
            commands.append(("WAIT", str(need), str(self.cfg.wait_timeout_ms)))
        replies = send_batch(self._redis, commands)
        if need and commands and int(replies[-1]) < need:
            raise SinkUnavailableError(
                f"WAIT: {replies[-1]} of {need} replicas confirmed the batch within "
                f"{self.cfg.wait_timeout_ms} ms",
                reason="replicas",
            )
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        # Counted once per batch, after its replies (this thread alone adds to it).
        counts = self.metrics.written.counts
        for key, n in written.items():
            counts[key] = counts.get(key, 0) + n
        self.written_total += sum(written.values())
        for _, reader, _, _, ack in batch:
            if ack is not None:
                try:
                    ack()
                except Exception as exc:  # an ack that fails must not stop the writer
                    log.warning("collector_ack_failed", reader=reader, error=str(exc))

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

    # --- the trim thread --------------------------------------------------------------

    def _trim_loop(self) -> None:
        """Trim every ``trim_interval_s`` (the first one interval after start) until the
        sink stops.

        Off the writer's path: its round trip never holds a batch. A failed trim (Redis
        away) is counted, logged once a minute, and tried again at the next interval;
        the writer's own retries say when Redis is back.
        """
        while not self._stop.wait(self.cfg.trim_interval_s):
            try:
                self.trim()
            except Exception as exc:  # Redis errors above all; the thread must go on
                self.metrics.redis_errors.inc()
                suppressed = self._trim_failures.admit("trim")
                if suppressed is not None:
                    log.warning(
                        "collector_trim_failed",
                        error=str(exc) or type(exc).__name__,
                        suppressed=suppressed,
                    )

    def trim(self) -> int:
        """Trim every partition stream once; entries removed."""
        return self._trimmer.trim(self.cfg.retention_s)
