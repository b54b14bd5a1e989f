"""Delivering reports and run notices: e-mail over SMTP and a Microsoft Teams webhook.

Both notifiers classify failures the Alertmanager way: a :class:`NotifyError` says whether
retrying may help (connection refused, 4xx SMTP replies, HTTP 429 and 5xx) or not
(recipient refused, HTTP 4xx). Transient failures are retried a few times with backoff
here; the caller records the final outcome. Neither notifier logs on its own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx

from core import smtp, teams
from core.config.runner import SmtpConfig, TeamsConfig
from core.lifecycle import backoff_delay
from runner.errors import NotifyError

T = TypeVar("T")

#: Adaptive Card schema accepted by Teams incoming webhooks and Workflows.
_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime: str = "application/octet-stream"


@dataclass(frozen=True)
class Message:
    """A notice: subject, plain text, optional HTML and attachments, and key facts."""

    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    facts: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _retry(op: Callable[[], T], attempts: int = 3, base_s: float = 0.5) -> T:
    rng = random.Random()  # noqa: S311 - retry jitter, not a secret
    for attempt in range(attempts):
        try:
            return op()
        except NotifyError as exc:
            if not exc.transient or attempt == attempts - 1:
                raise
            time.sleep(backoff_delay(attempt, base_s=base_s, cap_s=5.0, rng=rng))
    raise AssertionError("unreachable")  # pragma: no cover


class Mailer:
    """Sends :class:`Message` objects through the configured SMTP relay."""

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg

    def build(self, to: Sequence[str], message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.cfg.sender
        mail["To"] = ", ".join(to)
        mail["Subject"] = message.subject
        mail.set_content(message.text)
        if message.html is not None:
            mail.add_alternative(message.html, subtype="html")
        for item in message.attachments:
            maintype, _, subtype = item.mime.partition("/")
            mail.add_attachment(
                item.content, maintype=maintype, subtype=subtype, filename=item.filename
            )
        return mail

    def send(self, to: Sequence[str], message: Message) -> None:
        """Deliver to ``to``; raises :class:`NotifyError` after retries."""
        if not to:
            return
        mail = self.build(to, message)
        _retry(lambda: self._send_once(mail))

    def _send_once(self, mail: EmailMessage) -> None:
        smtp.send(self.cfg, mail, NotifyError)


class TeamsWebhook:
    """Posts an Adaptive Card to a Teams incoming webhook (or Workflows webhook)."""

    def __init__(self, cfg: TeamsConfig, *, client: httpx.Client | None = None) -> None:
        if cfg.webhook_url is None:
            raise ValueError("Teams webhook_url is not configured")
        self.url = cfg.webhook_url.get_secret_value()
        self.client = client or httpx.Client(timeout=cfg.timeout_s)

    @staticmethod
    def card(message: Message) -> dict[str, Any]:
        """The webhook payload: one Adaptive Card with the subject, text and facts."""
        body: list[dict[str, Any]] = [
            {
                "type": "TextBlock",
                "text": message.subject,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "TextBlock", "text": message.text, "wrap": True},
        ]
        if message.facts:
            body.append(
                {
                    "type": "FactSet",
                    "facts": [{"title": k, "value": v} for k, v in message.facts],
                }
            )
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": _CARD_SCHEMA,
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": body,
                    },
                }
            ],
        }

    def post(self, message: Message) -> None:
        """Deliver the card; raises :class:`NotifyError` after retries."""
        payload = self.card(message)
        _retry(lambda: self._post_once(payload))

    def _post_once(self, payload: dict[str, Any]) -> None:
        teams.post(self.client, self.url, payload, NotifyError)

    def close(self) -> None:
        self.client.close()
