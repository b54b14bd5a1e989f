"""One SMTP hand-over for every package that sends mail (report mail, notifications).

Each caller keeps its own error class (the runner's, notify's): :func:`send` raises what the
caller's ``fail`` builds, with the reason a client can act on and whether a retry may help:

- ``smtp_refused``: the relay refused every recipient (not transient);
- ``smtp_transient`` / ``smtp_rejected``: the relay answered 4xx / 5xx;
- ``smtp_unreachable``: no connection, TLS or protocol failure (transient).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Literal, Protocol

from pydantic import SecretStr


class Relay(Protocol):
    """What a relay's configuration gives (``core.config`` SmtpRelay, SmtpConfig)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def security(self) -> Literal["none", "starttls", "ssl"] | str: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> SecretStr | None: ...


class Fail(Protocol):
    """Builds the caller's error: ``fail(message, reason=..., transient=...)``."""

    def __call__(self, message: str, *, reason: str, transient: bool = True) -> Exception: ...


def send(relay: Relay, mail: EmailMessage, fail: Fail) -> None:
    """Hand ``mail`` to ``relay`` (SSL, STARTTLS or plain; login when a user is set)."""
    try:
        smtp: smtplib.SMTP
        if relay.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                relay.host,
                relay.port,
                timeout=relay.timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout_s)
        with smtp:
            if relay.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if relay.username:
                password = relay.password.get_secret_value() if relay.password else ""
                smtp.login(relay.username, password)
            smtp.send_message(mail)
    except smtplib.SMTPRecipientsRefused as exc:
        raise fail(
            f"SMTP refused every recipient: {exc.recipients}",
            reason="smtp_refused",
            transient=False,
        ) from exc
    except smtplib.SMTPResponseException as exc:
        transient = 400 <= exc.smtp_code < 500
        raise fail(
            f"SMTP answered {exc.smtp_code}: {exc.smtp_error!r}",
            reason="smtp_transient" if transient else "smtp_rejected",
            transient=transient,
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise fail(f"SMTP relay unreachable: {exc}", reason="smtp_unreachable") from exc
