"""Real local receivers for delivery tests: an aiosmtpd SMTP server and an HTTP webhook.

Both can refuse a share of calls (``fail_rate``, seeded) the way a busy relay (451) or a
throttled workflow (503) does, and hold each accepted call ``delay_s`` so a sender killed
"mid-delivery" is likely to be killed inside one. They record every accepted message with
its key (Message-ID / Idempotency-Key), duplicates included.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from repsys.servers import free_port


@dataclass
class Inbox:
    """What a receiver accepted and refused."""

    fail_rate: float = 0.0
    delay_s: float = 0.0
    seed: int = 1
    accepted: list[tuple[str, Any]] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def decide(self) -> bool:
        with self.lock:
            ok = self.rng.random() >= self.fail_rate
            if not ok:
                self.refused += 1
            return ok

    def keep(self, key: str, item: Any) -> None:
        with self.lock:
            self.accepted.append((key, item))

    def keys(self) -> list[str]:
        with self.lock:
            return [k for k, _ in self.accepted]


class _SmtpHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.inbox.delay_s:
            await asyncio.sleep(self.inbox.delay_s)  # a slow relay: the sender waits in DATA
        if not self.inbox.decide():
            return "451 4.3.0 Try again later"
        mail = message_from_bytes(envelope.content)
        self.inbox.keep(str(mail["Message-ID"]), mail)
        return "250 OK"


@contextmanager
def smtp_server(inbox: Inbox) -> Iterator[int]:
    """An aiosmtpd server on a free loopback port; yields the port."""
    port = free_port()
    controller = Controller(_SmtpHandler(inbox), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def webhook_server(inbox: Inbox) -> Iterator[str]:
    """An HTTP server taking POSTs of JSON; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if inbox.delay_s:
                time.sleep(inbox.delay_s)
            if not inbox.decide():
                self.send_response(503)
                self.end_headers()
                return
            inbox.keep(self.headers.get("Idempotency-Key", ""), body)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"1")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def mails(inbox: Inbox) -> list[Message]:
    with inbox.lock:
        return [m for _, m in inbox.accepted]
