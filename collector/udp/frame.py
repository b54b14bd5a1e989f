"""Okuma M208 datagrams: framing, header and 10-byte blocks, nothing plant-specific.

A datagram as the serial device server forwards it::

    0x12 | "<CNC_Approved_Workcenter_Key>,<Set_No: 2 chars>" | block * n | "%" | 0x14

at most ``max_data_bytes`` (160) between the framing bytes. Every block is 10 ASCII
bytes, a number right-aligned and padded with spaces (``"       100"``), as the macro's
``DPRNT`` writes it. The plants' own test senders send the body without the framing
bytes, hence ``framing="optional"``. A line end the serial port adds before ``%`` is
dropped. Anything else is refused with a :class:`PayloadRejectedError` whose reason is a
dead-letter reason: ``bad_framing``, ``too_long``, ``bad_header``, ``bad_length``,
``not_numeric``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from collector.errors import PayloadRejectedError

DC2 = 0x12
DC4 = 0x14
BLOCK = 10
_HEADER = re.compile(rb" *(\d{1,9}),(\d\d)")
#: A framed set-60 datagram of four whole numbers (the common datagram) in one match:
#: each block ten bytes, spaces then digits, ending in a digit (``int`` reads the rest).
_COMMAND = re.compile(rb"\x12 *(\d{1,9}),60([ \d]{9}\d)([ \d]{9}\d)([ \d]{9}\d)([ \d]{9}\d)%\x14")
# DPRNT writes "100", "100." or "100.000" depending on its format; a sign may lead.
_NUMBER = re.compile(rb" *([+-]?(?:\d+\.?\d*|\.\d+))")


class Datagram(NamedTuple):
    """A well-formed datagram: who sent it, which set, the numbers of its blocks.

    A named tuple, not a frozen dataclass: built once per datagram, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost a tenth of
    the frame parse.
    """

    workcenter_key: int
    set_no: int
    values: tuple[int | float, ...]


def body_of(data: bytes, *, framing: str = "required", max_data_bytes: int = 160) -> bytes:
    """The data between the framing bytes (see the module docstring)."""
    if len(data) >= 3 and data[0] == DC2 and data[-2:] == b"%\x14":
        body = data[1:-2]
    elif framing == "optional" and data[:1] != b"\x12" and not data.endswith(b"\x14"):
        body = data[:-1] if data.endswith(b"%") else data
    else:
        raise PayloadRejectedError("datagram is not framed DC2 ... % DC4", reason="bad_framing")
    if len(body) > max_data_bytes:
        raise PayloadRejectedError(
            f"{len(body)} data bytes is over {max_data_bytes}", reason="too_long"
        )
    return body.rstrip(b"\r\n")


def number(block: bytes, index: int) -> int | float:
    """A block's number: an int when it has no fraction (``"  100."`` is 100)."""
    digits = block.lstrip(b" ")
    if digits.isdigit():  # the common case, "       100", at a fraction of the regex's cost
        return int(digits)
    m = _NUMBER.fullmatch(block)
    if m is None:
        shown = block.decode("latin-1")
        raise PayloadRejectedError(
            f"block {index} is not a number: {shown!r}", reason="not_numeric"
        )
    text = m.group(1)
    if b"." in text:
        value = float(text)
        return int(value) if value.is_integer() else value
    return int(text)


def command_fast(data: bytes, max_data_bytes: int = 160) -> tuple[int, int, int, int, int] | None:
    """``(workcenter key, Cmd, Pallet_No, Tool_Var, Tool_Counter)`` of a framed set-60
    datagram of four whole numbers, or None for anything else (then :func:`parse` says).

    The fast path of the common datagram: one regex match instead of the frame, header
    and per-block steps. Where it answers, :func:`parse` gives the same numbers (a
    property test holds the two equal).
    """
    m = _COMMAND.fullmatch(data)
    if m is None or len(data) - 3 > max_data_bytes:
        return None
    key, cmd, pallet, tool_var, counter = m.groups()
    try:
        return int(key), int(cmd), int(pallet), int(tool_var), int(counter)
    except ValueError:  # a space between digits: the general parse names the refusal
        return None


def parse(data: bytes, *, framing: str = "required", max_data_bytes: int = 160) -> Datagram:
    """Decode a datagram (raises :class:`PayloadRejectedError` with the reason)."""
    body = body_of(data, framing=framing, max_data_bytes=max_data_bytes)
    m = _HEADER.match(body)
    if m is None:
        raise PayloadRejectedError(
            "the body does not start <workcenter key>,<set no: 2 digits>", reason="bad_header"
        )
    rest = body[m.end() :]
    if not rest or len(rest) % BLOCK:
        raise PayloadRejectedError(
            f"{len(rest)} bytes after the header is not a whole number of 10-byte blocks",
            reason="bad_length",
        )
    values: list[int | float] = []
    for i in range(0, len(rest), BLOCK):
        block = rest[i : i + BLOCK]
        digits = block.lstrip(b" ")
        # The common case, "       100", inline (a call per block was a third of the parse).
        values.append(int(digits) if digits.isdigit() else number(block, i // BLOCK + 1))
    key, set_no = m.groups()
    return Datagram(int(key), int(set_no), tuple(values))
