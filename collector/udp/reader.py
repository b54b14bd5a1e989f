"""The UDP reader: Okuma M208 datagrams from a serial device server, on one bound port.

UDP has no acknowledgement and no retransmission, so what this reader cannot promise is
said here once: a datagram sent while no collector listens (stopped, restarting, the
source's lease passing to a replica) is lost without a trace, and so is one the kernel
drops when the socket's receive buffer (``receive_buffer_bytes``) is full
(``/proc/net/snmp`` ``Udp: RcvbufErrors`` counts those). The payload has no sequence
number; what it shows of a loss is counted in ``repsys_collector_udp_gaps_total``
(:mod:`collector.udp.decode`). The run accounting lives in memory: after a restart
every tool's run in progress is "first seen mid-way" and its tool change is not
recorded (its machining events still are). Once received, a datagram's signals go
through the sink's ordered buffer like any reader's (the outage buffer covers Redis).

The socket is read by a thread of its own with plain blocking ``recvfrom`` (asyncio's
datagram transport cost several microseconds a datagram more, at a rate where the
whole of the reader's work is about ten); decoding is pure and short, and nothing a
datagram holds can raise out of the loop: a bad one is dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from collector.errors import SourceUnavailableError, rejection
from collector.metrics import CollectorMetrics
from collector.reader import Sink
from collector.rows import Row
from collector.udp.decode import DatagramDecoder, signals
from core.config import RepsysConfig
from core.config.collector_udp import UdpSource
from core.lifecycle import Stopper
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)

KIND = "udp"


#: How often the receive loop looks at the stopper while no datagram comes.
POLL_S = 0.25


class UdpReader:
    """Reads one UDP port (see the module docstring)."""

    kind = KIND

    @classmethod
    def from_config(
        cls, source: UdpSource, cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics
    ) -> UdpReader:
        """The reader of ``source`` as ``collector.service`` builds it."""
        return cls(source, sink, metrics)

    def __init__(self, source: UdpSource, sink: Sink, metrics: CollectorMetrics) -> None:
        self.source = source
        self.name = source.name
        self.sink = sink
        self.metrics = metrics
        gaps = metrics.udp_gaps
        self.decoder = DatagramDecoder(source, lambda kind: gaps.labels(source.name, kind).inc())
        #: The bound (host, port) while running; the port is the real one when 0 was asked.
        self.address: tuple[str, int] | None = None
        self.connected = threading.Event()
        self._thread: threading.Thread | None = None

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
        sock.settimeout(POLL_S)
        host, port = sock.getsockname()[:2]
        self.address = (host, port)
        return sock

    def _datagram(self, data: bytes, addr: Any, into: list[Row] | None = None) -> None:
        now = time.time()
        self.metrics.last_message.seen(KIND, self.name, now)
        try:
            rows = self.decoder.decode(data, now)
        except Exception as exc:  # nothing from the wire may escape the receive loop
            reason, error = rejection(exc)
            where = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
            self.sink.dead_letter(
                KIND, source=self.name, reason=reason, error=error, where=where, payload=data
            )
            return
        if into is not None:
            into.extend(rows)
            return
        # Rows of one machine go together; a counter set may name several machines.
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i][0] != rows[start][0]:
                self.sink.submit_rows(KIND, rows[start][0], rows[start:i])
                start = i

    def _receive(
        self, sock: socket.socket, until: Callable[[], bool], into: list[Row] | None
    ) -> None:
        """The receive loop (its own thread): datagrams until ``until()`` says stop."""
        recv = sock.recvfrom
        while not until():
            try:
                data, addr = recv(65_535)
            except TimeoutError:
                continue
            except OSError as exc:  # the socket failed under us: let the supervisor rebind
                log.warning("udp_receive_failed", source=self.name, error=str(exc))
                return
            self._datagram(data, addr, into)

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
        sock = self._socket()
        self.metrics.connected.labels(KIND, self.name).set(1)
        self.metrics.last_message.seen(KIND, self.name, time.time())
        self.connected.set()
        log.info("udp_listening", source=self.name, address=self.address)
        try:
            await self._in_thread(sock, lambda: stopper.stopped, None)
        finally:
            sock.close()
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
