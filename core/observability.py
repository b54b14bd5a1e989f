"""The HTTP endpoint of every long-running process: /metrics, /healthz, /readyz.

``/healthz`` answers 200 while the process is alive and its own liveness check (if it
has one) passes: a process whose intake stalled although it looks connected answers 503,
and the liveness probe restarts it. ``/readyz`` answers 200 only when the process's own
readiness check passes (connected to what it needs), so Kubernetes sends it work only
then. The server runs in a daemon thread so it answers even while the event loop is busy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = generate_latest(self.server.registry)
            self._send(200, body, CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            healthy, why = self.server.check_healthy()
            self._send(200 if healthy else 503, (why or "ok").encode() + b"\n", "text/plain")
        elif path == "/readyz":
            ready, why = self.server.check_ready()
            self._send(200 if ready else 503, (why or "ok").encode() + b"\n", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes hit these endpoints every few seconds; access logs would drown the rest.
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    check_ready: Callable[[], tuple[bool, str]]
    check_healthy: Callable[[], tuple[bool, str]]


class ObservabilityServer:
    """Serves /metrics from ``registry``, /readyz from ``ready``, /healthz from ``healthy``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ready: Callable[[], tuple[bool, str]] | None = None,
        healthy: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.registry = registry
        self._server.check_ready = ready or (lambda: (True, ""))
        self._server.check_healthy = healthy or (lambda: (True, ""))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="observability", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ObservabilityServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
