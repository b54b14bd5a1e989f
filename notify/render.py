"""What a delivery says: subject, plain text, HTML and facts, from its stored payload.

The payload is written when the dispatcher cuts a message (``notify.dispatch_job``) and
holds the ticket facts of each event carried, so a retry a day later says what was true
when the event happened. Text is escaped for HTML; nothing from a ticket is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

_VERBS = {
    "filed": "filed",
    "escalated": "escalated",
    "recurred": "recurred while open",
    "cleared": "cleared",
    "ops": "RepSys operations",
}


@dataclass(frozen=True)
class Message:
    """A rendered delivery."""

    subject: str
    text: str
    html: str
    facts: tuple[tuple[str, str], ...]


def _line(n: dict[str, Any]) -> str:
    if n.get("event") == "ops" and not n.get("machine"):
        return f"RepSys operations: {n.get('title', '')}"
    verb = _VERBS.get(str(n.get("event", "")), str(n.get("event", "")))
    level = f" to level {n['level']}" if n.get("event") == "escalated" else ""
    plex = f" (Plex {n['plex_number']})" if n.get("plex_number") else ""
    count = f", {n['recurrences']} recurrences" if n.get("recurrences") else ""
    return f"{n.get('machine', '')}: {n.get('title', '')}{plex} {verb}{level}{count}"


def render(payload: dict[str, Any]) -> Message:
    """The message of a delivery payload."""
    notices = [n for n in payload.get("notices", []) if isinstance(n, dict)]
    first = notices[0] if notices else {}
    prefix = "Reminder: " if payload.get("repeat") else ""
    if len(notices) == 1:
        subject = prefix + _line(first)
    else:
        subject = f"{prefix}{len(notices)} ticket events: {payload.get('group', '')}"
    lines = [_line(n) for n in notices]
    details = [str(n["detail"]) for n in notices if n.get("detail")]
    text = "\n".join([*lines, "", *details] if details else lines)
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    chart = '<p><img src="cid:evidence" alt="evidence chart"></p>' if payload.get("chart") else ""
    html = (
        f"<html><body><h3>{escape(subject)}</h3><ul>{items}</ul>"
        + "".join(f"<p>{escape(d)}</p>" for d in details)
        + chart
        + "</body></html>"
    )
    facts = (
        ("machine", str(first.get("machine", ""))),
        ("severity", str(first.get("severity", ""))),
        ("level", str(first.get("level", ""))),
        ("Plex", str(first.get("plex_number") or "")),
    )
    return Message(subject[:200], text, html, tuple(f for f in facts if f[1]))
