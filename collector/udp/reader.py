"""The UDP reader: Okuma M208 datagrams from a serial device server, on one bound port.

UDP has no acknowledgement and no retransmission, so what this reader cannot promise is
said here once: a datagram sent while no collector listens (stopped, restarting, the
source's lease passing to a replica) is lost without a trace, and so is one the kernel
drops when the socket's receive buffer (``receive_buffer_bytes``) is full
(``/proc/net/snmp`` ``Udp: RcvbufErrors`` counts those). The payload has no sequence
number; what it shows of a loss is counted in ``repsys_collector_udp_gaps_total``
(:mod:`collector.udp.decode`). Once received, a datagram's signals go through the
sink's ordered buffer like any reader's (the outage buffer covers Redis).

The tool-life runs outlive the process: each END's run state is saved in Redis
(:mod:`collector.state`, field ``run:<workcenter>:<tool var>``) once its signals are
in the streams, coalesced by the receive loop every ``FLUSH_S``, and taken back when
the reader starts, so a restart (or a replica taking the lease) goes on with the
running totals. A save older than the streams (the process killed within ``FLUSH_S``)
heals itself: a run's total grows by the counter's rise since the saved reading; only a
tool change in that window is not seen. Pending STARTs are not saved: an END whose
START came before the restart counts ``end_without_start``.

The socket is read by a thread of its own (asyncio's datagram transport cost several
microseconds a datagram more, at a rate where the whole of the reader's work is about
ten), non-blocking: each wake-up drains what the kernel holds and hands the rows to the
sink in one call (decision 0480). Decoding is pure and short, and nothing a datagram
holds can raise out of the loop: a bad one is dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from collector.errors import SourceUnavailableError, rejection
from collector.metrics import CollectorMetrics
from collector.reader import Sink
from collector.rows import Row
from collector.state import SourceState
from collector.udp.decode import DatagramDecoder, signals
from core.config import RepsysConfig
from core.config.collector_udp import UdpSource
from core.lifecycle import Stopper
from core.logs import get_logger
from core.model import Signal
from core.redis import connect_sync

log = get_logger(__name__)

KIND = "udp"


#: How often the receive loop looks at the stopper while no datagram comes.
POLL_S = 0.25
#: Run states are written to Redis at most this often (one HSET for all touched runs).
FLUSH_S = 0.2
#: Datagrams taken per wake-up at most (then the sink gets them and the loop goes on).
DRAIN_MAX = 256
#: The receive loop's pause after a wake-up, so the next finds datagrams waiting
#: (decision 0480): at 20,000 datagrams/s about 20 a wake-up instead of one.
LINGER_S = 0.001


class UdpReader:
    """Reads one UDP port (see the module docstring)."""

    kind = KIND

    @classmethod
    def from_config(
        cls, source: UdpSource, cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics
    ) -> UdpReader:
        """The reader of ``source`` as ``collector.service`` builds it."""
        state = SourceState(connect_sync(cfg.redis), cfg.collector.name, source.name)
        return cls(source, sink, metrics, state=state)

    def __init__(
        self,
        source: UdpSource,
        sink: Sink,
        metrics: CollectorMetrics,
        *,
        state: SourceState | None = None,
    ) -> None:
        self.source = source
        self.name = source.name
        self.sink = sink
        self.metrics = metrics
        #: Gaps of the batch being decoded, by kind: added to the metric once per batch
        #: (labels() and inc() cost a microsecond or two a datagram).
        self._gaps: dict[str, int] = {}
        gaps = self._gaps

        def gap(kind: str) -> None:
            gaps[kind] = gaps.get(kind, 0) + 1

        self.decoder = DatagramDecoder(source, gap)
        #: The bound (host, port) while running; the port is the real one when 0 was asked.
        self.address: tuple[str, int] | None = None
        self.connected = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = state
        #: Run states whose signals are written, not yet saved (field -> JSON).
        self._pending: dict[str, str] = {}
        self._lock = threading.Lock()
        self._receiving = False
        self._last_flush = 0.0

    # --- run state -------------------------------------------------------------------

    def _saver(self, fields: dict[str, str]) -> Callable[[], None]:
        """The ack of a datagram's rows: its runs' state becomes due for saving."""

        def ack() -> None:
            with self._lock:
                self._pending.update(fields)
                if self._receiving:
                    return  # the receive loop flushes, coalesced
            self._flush()

        return ack

    def _flush(self) -> None:
        """Save the pending run states in one HSET (kept for the next try if it fails)."""
        self._last_flush = time.monotonic()
        with self._lock:
            if not self._pending:
                return
            fields, self._pending = self._pending, {}
        if self.state is not None and not self.state.save(fields):
            with self._lock:
                for name, value in fields.items():
                    self._pending.setdefault(name, value)

    def _restore(self) -> None:
        """Take the saved runs back (after saving what this process still holds)."""
        if self.state is None:
            return
        self._flush()
        saved = self.state.load()
        if saved is None:
            return  # Redis cannot say: keep the runs in memory
        self.decoder.runs.clear()
        n = self.decoder.restore(saved)
        log.info("udp_runs_restored", source=self.name, runs=n)

    def _socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.source.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.source.receive_buffer_bytes)
            sock.bind((self.source.host, self.source.port))
        except OSError as exc:
            sock.close()
            raise SourceUnavailableError(
                f"cannot bind udp {self.source.host}:{self.source.port}: {exc}", reason="bind"
            ) from exc
        sock.setblocking(False)  # drained in _receive, woken by poll
        host, port = sock.getsockname()[:2]
        self.address = (host, port)
        return sock

    def _dead_letter(self, exc: Exception, data: bytes, addr: Any) -> None:
        reason, error = rejection(exc)
        where = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        self.sink.dead_letter(
            KIND, source=self.name, reason=reason, error=error, where=where, payload=data
        )

    def _hand_off(self, groups: list[tuple[str, list[Row]]], into: list[Row] | None) -> None:
        """Give the sink the rows decoded so far, with their runs' save as the ack."""
        decoder = self.decoder
        fields = decoder.run_fields() if decoder.touched else None
        if into is not None:
            for _machine, rows in groups:
                into.extend(rows)
            return
        if not groups:
            return
        ack = self._saver(fields) if fields and self.state is not None else None
        # The ack saves run states, it is no broker's: the other rows stay droppable when
        # the buffer overflows (Redis away), as each datagram's were before batching.
        self.sink.submit_groups(KIND, groups, ack, keep_all=False)

    def _batch(self, grams: list[tuple[bytes, Any]], into: list[Row] | None = None) -> None:
        """Decode one wake-up's datagrams and hand their rows to the sink at once.

        Rows keep the datagrams' order; consecutive rows of one machine become one
        group. A bad datagram is dead-lettered in its place (what came before it is
        handed off first) and nothing of it escapes the loop.
        """
        decode = self.decoder.decode
        groups: list[tuple[str, list[Row]]] = []
        machine = ""
        current: list[Row] = []
        now = 0.0
        for data, addr in grams:
            now = time.time()
            try:
                rows = decode(data, now)
            except Exception as exc:  # nothing from the wire may escape the receive loop
                self._hand_off(groups, into)
                groups, machine = [], ""
                self._dead_letter(exc, data, addr)
                continue
            for row in rows:
                if row[0] != machine or not groups:
                    machine = row[0]
                    current = []
                    groups.append((machine, current))
                current.append(row)
        if grams:
            self.metrics.last_message.seen(KIND, self.name, now)
        if self._gaps:
            counter = self.metrics.udp_gaps
            for kind, n in self._gaps.items():
                counter.labels(self.name, kind).inc(n)
            self._gaps.clear()
        self._hand_off(groups, into)

    def _datagram(self, data: bytes, addr: Any, into: list[Row] | None = None) -> None:
        """One datagram on its own (tests and tools; the loop decodes in batches)."""
        self._batch([(data, addr)], into)

    def _receive(
        self, sock: socket.socket, until: Callable[[], bool], into: list[Row] | None
    ) -> None:
        """The receive loop (its own thread): datagrams until ``until()`` says stop.

        The socket is non-blocking: each wake-up drains what the kernel holds (up to
        ``DRAIN_MAX``), decodes it and hands the rows to the sink in one call, then
        sleeps ``LINGER_S`` so that the next wake-up finds several datagrams. A
        wake-up per datagram (poll, receive, GIL, sink lock) was most of the loop's
        CPU at a high rate; the linger adds at most its length to a datagram's way to
        the streams, beside the sink's own ``linger_ms``.
        """
        recv = sock.recvfrom
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poll = poller.poll
        timeout_ms = int(POLL_S * 1000)
        while not until():
            if self._pending and time.monotonic() - self._last_flush >= FLUSH_S:
                self._flush()
            if not poll(timeout_ms):
                continue
            grams: list[tuple[bytes, Any]] = []
            failed: OSError | None = None
            try:
                while len(grams) < DRAIN_MAX:
                    grams.append(recv(65_535))
            except BlockingIOError:
                pass  # drained
            except OSError as exc:  # the socket failed under us: let the supervisor rebind
                failed = exc
            self._batch(grams, into)
            if failed is not None:
                log.warning("udp_receive_failed", source=self.name, error=str(failed))
                return
            if len(grams) < DRAIN_MAX:
                time.sleep(LINGER_S)  # gathering the next wake-up's datagrams

    async def _in_thread(
        self, sock: socket.socket, until: Callable[[], bool], into: list[Row] | None
    ) -> None:
        """Run the receive loop in a thread of its own (not the shared executor's: it lives
        as long as the source) and wait for it to end."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        def body() -> None:
            try:
                self._receive(sock, until, into)
            finally:
                loop.call_soon_threadsafe(finish)

        threading.Thread(target=body, name=f"udp-{self.name}", daemon=True).start()
        await done

    async def run(self, stopper: Stopper) -> None:
        """Bind and read until the stopper is set (a bind failure raises: backoff, retry)."""
        await asyncio.to_thread(self._restore)
        sock = self._socket()
        self.metrics.connected.labels(KIND, self.name).set(1)
        self.metrics.last_message.seen(KIND, self.name, time.time())
        self.connected.set()
        log.info("udp_listening", source=self.name, address=self.address)
        self._receiving = True
        try:
            await self._in_thread(sock, lambda: stopper.stopped, None)
        finally:
            self._receiving = False
            sock.close()
            await asyncio.to_thread(self._flush)  # acks after this save at once
            self.connected.clear()
            self.metrics.connected.labels(KIND, self.name).set(0)
        if not stopper.stopped:
            raise SourceUnavailableError(f"udp {self.address}: the socket failed", reason="session")

    async def read_once(self, seconds: float) -> list[Signal]:
        """Listen for ``seconds`` and return the signals received (bad ones dead-lettered)."""
        got: list[Row] = []
        sock = self._socket()
        deadline = time.monotonic() + seconds
        try:
            await self._in_thread(sock, lambda: time.monotonic() > deadline, got)
        finally:
            sock.close()
        return signals(got)

    def healthy(self) -> tuple[bool, str]:
        """Always healthy: a failed receive loop ends ``run``, and the supervisor rebinds."""
        return True, ""
