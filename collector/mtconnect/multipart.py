"""The parts of an MTConnect Agent's sample stream, from its bytes as they arrive.

``/sample?from=<n>&interval=<ms>`` makes an agent answer with one HTTP response that
never ends: ``Content-Type: multipart/mixed;boundary=<b>`` (cppagent 2.x; older agents
say ``multipart/x-mixed-replace``), each part an ``MTConnectStreams`` document framed as
cppagent writes it::

    --<b>\\r\\n
    Content-type: text/xml\\r\\n
    Content-length: <n>\\r\\n
    \\r\\n
    <n bytes of XML>\\r\\n

A part without ``Content-length`` ends where the next boundary line starts. The parser
is pure and incremental: :meth:`PartReader.feed` takes the bytes of any chunking and
returns the parts they completed, in order; what is held back is bounded by
``max_part_bytes`` (a larger part raises :class:`PayloadRejectedError` ``too_large``, a
part header that is not one ``bad_framing``).
"""

from __future__ import annotations

import re

from collector.errors import PayloadRejectedError

_BOUNDARY = re.compile(r"""boundary=(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
#: Part headers are a few short lines; more than this before the blank line is no part.
MAX_HEADER_BYTES = 4096


def boundary_of(content_type: str) -> str | None:
    """The boundary of a ``multipart/*`` content type, or None when it is not one."""
    if not content_type.lower().startswith("multipart/"):
        return None
    m = _BOUNDARY.search(content_type)
    if m is None:
        return None
    return m.group(1) or m.group(2)


class PartReader:
    """Splits a multipart stream into its parts' bodies (see the module docstring)."""

    def __init__(self, boundary: str, max_part_bytes: int) -> None:
        self.delimiter = b"--" + boundary.encode("latin-1")
        self.max_part_bytes = max_part_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes of the stream; the bodies of the parts now complete."""
        self._buf += data
        out: list[bytes] = []
        while True:
            body = self._next()
            if body is None:
                break
            out.append(body)
        if len(self._buf) > self.max_part_bytes + MAX_HEADER_BYTES:
            raise PayloadRejectedError(
                f"a stream part over {self.max_part_bytes} bytes", reason="too_large"
            )
        return out

    def _next(self) -> bytes | None:
        """One complete part off the front of the buffer, else None (wait for more)."""
        buf = self._buf
        start = buf.find(self.delimiter)
        if start < 0:
            # Keep only a tail that may hold the start of a delimiter.
            del buf[: max(0, len(buf) - len(self.delimiter))]
            return None
        line_end = buf.find(b"\r\n", start)
        head_end = buf.find(b"\r\n\r\n", start)
        if line_end < 0 or head_end < 0:
            if len(buf) - start > MAX_HEADER_BYTES:
                raise PayloadRejectedError(
                    "a stream part without its headers", reason="bad_framing"
                )
            return None
        if buf[start + len(self.delimiter) : line_end].strip() == b"--":
            del buf[: line_end + 2]  # the closing delimiter: nothing follows
            return None
        headers = bytes(buf[line_end + 2 : head_end + 2])
        body_start = head_end + 4
        m = _LENGTH.search(headers)
        if m is not None:
            end = body_start + int(m.group(1))
            if int(m.group(1)) > self.max_part_bytes:
                raise PayloadRejectedError(
                    f"a stream part of {m.group(1).decode()} bytes is over {self.max_part_bytes}",
                    reason="too_large",
                )
            if len(buf) < end:
                return None
            body = bytes(buf[body_start:end])
            del buf[:end]
            return body
        return self._unsized(body_start)

    def _unsized(self, body_start: int) -> bytes | None:
        """A part without ``Content-length``: it ends at the line before the next delimiter."""
        buf = self._buf
        nxt = buf.find(b"\r\n" + self.delimiter, body_start)
        if nxt < 0:
            return None
        body = bytes(buf[body_start:nxt])
        del buf[: nxt + 2]
        return body
