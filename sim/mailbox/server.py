"""A local SMTP server (aiosmtpd) that keeps every mail as a ``.eml`` file.

The demo points ``notify.smtp`` at it, so the supervisors' escalation mail lands in
``<demo folder>/mailbox/`` where anyone can open it (any mail program reads ``.eml``).
Each file is named after its arrival order and recipient; ``index.txt`` lists them with
the subject, one a line. aiosmtpd is a development dependency (``make setup`` installs it).
"""

from __future__ import annotations

import re
import threading
from email import message_from_bytes
from pathlib import Path
from typing import Any

from core.logs import get_logger

log = get_logger(__name__)


class _Handler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self.count = len(list(folder.glob("*.eml")))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        mail = message_from_bytes(envelope.content)
        to = ",".join(envelope.rcpt_tos)
        with self.lock:
            self.count += 1
            name = f"{self.count:05d}-{re.sub(r'[^A-Za-z0-9@.,_-]', '_', to)[:60]}.eml"
            (self.folder / name).write_bytes(envelope.content)
            with (self.folder / "index.txt").open("a", encoding="utf-8") as index:
                subject = " ".join(str(mail["Subject"] or "").split())  # unfolded
                index.write(f"{name}\t{subject}\n")
        log.info("mailbox_received", to=to, file=name)
        return "250 OK"


class Mailbox:
    """Starts and stops the SMTP server filing mails in ``folder``."""

    def __init__(self, folder: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        from aiosmtpd.controller import Controller  # noqa: PLC0415 - a dev dependency

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.controller = Controller(_Handler(folder), hostname=host, port=port)

    def start(self) -> Mailbox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
