"""Sending one rendered delivery: e-mail over SMTP, an Adaptive Card to a Teams workflow.

One try per call; the outbox retries (``notify.outbox``). Failures are classified where
they happen (``notify.errors``). Each message carries the delivery's key: the e-mail's
``Message-ID`` and the webhook's ``Idempotency-Key`` header, so a resend after a crash is
recognisable as the same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import httpx

from core import smtp, teams
from core.config.notify import SmtpRelay
from notify.errors import NotifyError
from notify.render import Message

_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


def message_id(key: str) -> str:
    """The e-mail Message-ID of a delivery key (stable across resends)."""
    safe = "".join(c if c.isalnum() or c in "-._" else "." for c in key)
    return f"<{safe}@repsys>"


def build_mail(
    relay: SmtpRelay, key: str, to: Sequence[str], message: Message, chart: bytes | None
) -> EmailMessage:
    """HTML and plain text; the evidence chart inline as ``cid:evidence``."""
    mail = EmailMessage()
    mail["From"] = relay.sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = message.subject
    mail["Message-ID"] = message_id(key)
    mail["Date"] = formatdate(localtime=False)
    mail.set_content(message.text)
    mail.add_alternative(message.html, subtype="html")
    if chart is not None:
        html_part = mail.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)  # the alternative added above
        html_part.add_related(chart, "image", "png", cid="<evidence>", filename="evidence.png")
    return mail


class EmailChannel:
    """SMTP relay of ``notify.smtp``."""

    def __init__(self, relay: SmtpRelay) -> None:
        self.relay = relay

    def send(self, mail: EmailMessage) -> None:
        """Hand the message to the relay; raises :class:`NotifyError`."""
        smtp.send(self.relay, mail, NotifyError)


def card(message: Message) -> dict[str, Any]:
    """The workflow webhook's body: one Adaptive Card with the subject, text and facts."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": message.subject, "weight": "Bolder", "wrap": True},
        {"type": "TextBlock", "text": message.text, "wrap": True},
    ]
    if message.facts:
        body.append(
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.facts]}
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


class TeamsChannel:
    """POSTs cards to workflow webhooks (one client for every receiver's URL)."""

    def __init__(self, timeout_s: float = 15.0, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(timeout=timeout_s)

    def send(self, url: str, key: str, message: Message) -> None:
        """Deliver the card; raises :class:`NotifyError`."""
        teams.post(self.client, url, card(message), NotifyError, headers={"Idempotency-Key": key})

    def close(self) -> None:
        self.client.close()
