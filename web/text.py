"""Free text as people type it, made fit for the database and for Plex, or refused.

Every free-text field of the forms and the API (a ticket's description, a silence's
reason) goes through :func:`clean_text`. It returns the text NFC-normalized (so "é"
typed as one or as two code points is stored, compared and searched alike) and stripped,
or a :class:`TextProblem` saying why it cannot be taken:

- ``unencodable``: a lone surrogate (``"\\ud800"``, possible in JSON) cannot be written as
  UTF-8, so no database, Redis or SOAP call can carry it;
- ``control``: C0 controls other than tab and line breaks, DEL, and C1 controls
  (U+0080-U+009F) mean nothing in a ticket and break Plex's fields and mail headers;
- ``direction``: bidirectional embeddings, overrides and isolates (U+202A-U+202E,
  U+2066-U+2069) make a title read differently from what it holds ("Trojan Source");
  the marks U+200E/U+200F, which only nudge neutral characters, stay allowed;
- ``empty``: nothing visible is left once spaces, format characters (U+200B, U+FEFF,
  joiners), controls and unassigned or private code points are taken away.

Format characters inside visible text (a zero-width joiner in an emoji, a non-joiner in
Persian) are kept: they are part of how the text is written.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

#: C0 controls except tab, line feed and carriage return; DEL; C1 controls.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: Bidirectional embeddings, overrides and isolates.
DIRECTION = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
#: Unicode general categories that show nothing by themselves.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


class TextProblem(StrEnum):
    """Why a text was refused; the value is the ``reason`` a client can act on."""

    UNENCODABLE = "unencodable"
    CONTROL = "control"
    DIRECTION = "direction"
    EMPTY = "empty"


def visible(text: str) -> bool:
    """True when ``text`` holds at least one character that shows."""
    return any(unicodedata.category(ch) not in INVISIBLE_CATEGORIES for ch in text)


def clean_text(raw: str, *, multiline: bool = True) -> tuple[str, TextProblem | None]:
    """``raw`` normalized (NFC, stripped, CRLF as LF) and the problem with it, if any.

    With ``multiline=False`` line breaks and tabs count as control characters too.
    """
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return "", TextProblem.UNENCODABLE
    text = unicodedata.normalize("NFC", raw).replace("\r\n", "\n").strip()
    if CONTROL.search(text) or (not multiline and re.search(r"[\t\n\r]", text)):
        return text, TextProblem.CONTROL
    if DIRECTION.search(text):
        return text, TextProblem.DIRECTION
    if not visible(text):
        return text, TextProblem.EMPTY
    return text, None
