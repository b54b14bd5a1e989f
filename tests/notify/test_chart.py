"""The mail's evidence PNG: a valid image with the series where the numbers put it."""

from __future__ import annotations

import struct
import zlib

from notify.chart import HEIGHT, PAD, WIDTH, evidence_png


def _pixels(png: bytes) -> list[bytes]:
    """A plain PNG reader for the one format the chart writes (RGB, filter 0, one IDAT)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF
        if kind == b"IHDR":
            size = struct.unpack(">II", data[:8])
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    assert size == (WIDTH, HEIGHT)
    raw = zlib.decompress(idat)
    stride = 1 + WIDTH * 3
    return [raw[r * stride + 1 : (r + 1) * stride] for r in range(HEIGHT)]


def test_series_and_limit_are_drawn_where_their_values_are() -> None:
    evidence = {"series": [{"points": [[0, 0], [100, 10]], "limit": 20}], "values": {"x": 1}}
    png = evidence_png(evidence)
    assert png is not None
    rows = _pixels(png)
    blue = bytes((31, 119, 180))
    grey = bytes((170, 170, 170))
    # Value 0 at the bottom-left, 10 half way up, the limit 20 at the top.
    bottom, top = HEIGHT - PAD - 1, PAD
    assert rows[bottom][3 * PAD : 3 * PAD + 3] == blue
    middle = bottom - round(10 / 20 * (HEIGHT - 2 * PAD - 1))
    right = WIDTH - PAD - 1
    assert rows[middle][3 * right : 3 * right + 3] == blue
    assert rows[top][3 * (WIDTH // 2) : 3 * (WIDTH // 2) + 3] == grey


def test_nothing_drawable_gives_no_chart() -> None:
    assert evidence_png(None) is None
    assert evidence_png({"series": {"points": [[0, 1]]}}) is None  # one point is no line
    assert evidence_png({"series": [{"points": [["x", True]]}]}) is None
