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

The socket is read by asyncio's datagram transport on the collector's loop; decoding is
pure and short, and nothing a datagram holds can raise out of the callback: a bad one is
dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

from collector.errors import SourceUnavailableError, rejection
from collector.metrics import CollectorMetrics
from collector.reader import Sink
from collector.udp.decode import DatagramDecoder
from core.config.collector_udp import UdpSource
from core.lifecycle import Stopper
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)

KIND = "udp"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for a datagram we never sent (we only receive): nothing to do.
        log.warning("udp_socket_error", error=str(exc))


class UdpReader:
    """Reads one UDP port (see the module docstring)."""

    kind = KIND

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
        sock.setblocking(False)
        return sock

    def _datagram(self, data: bytes, addr: Any, into: list[Signal] | None = None) -> None:
        now = time.time()
        self.metrics.last_message.seen(KIND, self.name, now)
        try:
            signals = self.decoder.decode(data, now)
        except Exception as exc:  # nothing from the wire may escape the transport callback
            reason, error = rejection(exc)
            where = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
            self.sink.dead_letter(
                KIND, source=self.name, reason=reason, error=error, where=where, payload=data
            )
            return
        if not signals:
            return
        if into is not None:
            into.extend(signals)
        else:
            self.sink.submit(KIND, signals)

    async def _open(self, into: list[Signal] | None) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        sock = self._socket()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(lambda d, a: self._datagram(d, a, into)), sock=sock
        )
        host, port = sock.getsockname()[:2]
        self.address = (host, port)
        return transport

    async def run(self, stopper: Stopper) -> None:
        """Bind and read until the stopper is set (a bind failure raises: backoff, retry)."""
        transport = await self._open(None)
        self.metrics.connected.labels(KIND, self.name).set(1)
        self.metrics.last_message.seen(KIND, self.name, time.time())
        self.connected.set()
        log.info("udp_listening", source=self.name, address=self.address)
        try:
            await stopper.wait_async()
        finally:
            transport.close()
            self.connected.clear()
            self.metrics.connected.labels(KIND, self.name).set(0)

    async def read_once(self, seconds: float) -> list[Signal]:
        """Listen for ``seconds`` and return the signals received (bad ones dead-lettered)."""
        got: list[Signal] = []
        transport = await self._open(got)
        try:
            await asyncio.sleep(seconds)  # one round of UDP is a listening window
        finally:
            transport.close()
        return got

    def healthy(self) -> tuple[bool, str]:
        """Always healthy: the transport lives on the collector's own loop."""
        return True, ""
