"""One ASGI middleware for what every response needs: security headers, a body limit, metrics.

Security headers: a strict Content-Security-Policy (our own scripts and styles only, no
inline script, no framing), ``X-Frame-Options``, ``nosniff``, a same-origin referrer, and
``Cache-Control: no-store`` on pages (they show tickets and names; a shared tablet's back
button must not show them after logout). Static files keep their cache headers.

The body limit answers 413 before a handler parses a huge form (by ``Content-Length``, and
by counting for chunked bodies), so a 100 MB post cannot fill the server's memory.
"""

from __future__ import annotations

import html
import json
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.metrics import WebMetrics

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

#: The 413 page: the body limit answers before any handler or template runs.
TOO_LARGE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Too large · RepSys</title><link rel="stylesheet" href="{root}/static/app.css"></head>
<body><header class="top"><a class="brand" href="{root}/">RepSys</a></header>
<main class="page"><section class="card narrow"><h1>Too large</h1>
<p class="message" id="error-message">{message}</p>
<p><a class="btn" href="{root}/">Back to the start page</a></p></section></main></body></html>
"""
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
}


class BodyTooLargeError(Exception):
    """Raised inside ``receive`` when a chunked body passes the limit."""


class WebMiddleware:
    """Adds security headers, enforces the body limit and counts every request."""

    def __init__(
        self, app: ASGIApp, *, metrics: WebMetrics, max_body_bytes: int, hsts: bool = False
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.headers = dict(SECURITY_HEADERS)
        if hsts:
            self.headers["strict-transport-security"] = "max-age=31536000; includeSubDomains"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(scope, send, status)
            self._count(scope, status["code"], started)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                status["sent"] = True
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                if not scope["path"].startswith("/static/"):
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLargeError:
            if not status["sent"]:
                await self._too_large(scope, send, status)
        finally:
            self._count(scope, status["code"], started)

    async def _too_large(self, scope: Scope, send: Send, status: dict[str, Any]) -> None:
        message = f"Request body larger than {self.max_body_bytes} bytes."
        status["code"] = 413
        status["sent"] = True
        headers = [(k.encode(), v.encode()) for k, v in self.headers.items()]
        if scope["path"].startswith(f"{scope.get('root_path', '')}/api/"):
            # The API's one error shape (web.openapi.ErrorOut), as its document says.
            body = json.dumps({"detail": message, "reason": "too_large", "errors": {}}).encode()
            headers += [(b"content-type", b"application/json")]
        else:
            # A page, in the app's style (no template here: the handler never ran).
            root = html.escape(str(scope.get("root_path", "")))
            body = TOO_LARGE_PAGE.format(root=root, message=html.escape(message)).encode()
            headers += [(b"content-type", b"text/html; charset=utf-8")]
        headers += [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _count(self, scope: Scope, code: int, started: float) -> None:
        route = scope.get("route")
        template = str(getattr(route, "path", "")) or "unmatched"
        self.metrics.requests.labels(
            route=template, method=scope.get("method", ""), status=str(code)
        ).inc()
        self.metrics.request_seconds.labels(route=template).observe(time.perf_counter() - started)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
