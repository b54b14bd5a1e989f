"""The evidence chart of a mail as a small PNG, drawn without a chart library.

Mail clients do not show SVG (the web's ``web.charts``), so a mail carries a PNG inline
(``cid:``). The image is a few lines on a white field: each series of the episode's
evidence (``{"series": [{"points": [[t, v], ...], "limit": x, ...}]}``, the shape
``web/charts.py`` documents) in its colour, reference lines grey. Encoded with zlib; a
few kilobytes. Unreadable evidence gives ``None`` (no chart), never an error.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from typing import Any

WIDTH, HEIGHT, PAD = 320, 120, 6
_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44)]
_GREY = (170, 170, 170)
_REFS = ("baseline", "warning", "limit")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _series(evidence: Any) -> list[tuple[list[tuple[float, float]], list[float]]]:
    if not isinstance(evidence, dict):
        return []
    raw = evidence.get("series")
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items[:3]:
        if not isinstance(item, dict) or not isinstance(item.get("points"), list):
            continue
        points = []
        for p in item["points"]:
            if isinstance(p, list | tuple) and len(p) == 2:
                t, v = _num(p[0]), _num(p[1])
                if t is not None and v is not None:
                    points.append((t, v))
        refs = [r for r in (_num(item.get(k)) for k in _REFS) if r is not None]
        if len(points) >= 2:
            out.append((sorted(points), refs))
    return out


def _png(pixels: list[bytearray]) -> bytes:
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def evidence_png(evidence: Any) -> bytes | None:
    """A PNG of the evidence's series, or ``None`` when there is nothing to draw."""
    series = _series(evidence)
    if not series:
        return None
    ts = [t for pts, _ in series for t, _ in pts]
    vs = [v for pts, refs in series for _, v in pts] + [r for _, refs in series for r in refs]
    t0, t1 = min(ts), max(ts)
    v0, v1 = min(vs), max(vs)
    t1 = t1 if t1 > t0 else t0 + 1
    v1 = v1 if v1 > v0 else v0 + 1
    pixels = [bytearray(b"\xff" * (WIDTH * 3)) for _ in range(HEIGHT)]

    def xy(t: float, v: float) -> tuple[int, int]:
        x = PAD + round((t - t0) / (t1 - t0) * (WIDTH - 2 * PAD - 1))
        y = HEIGHT - PAD - 1 - round((v - v0) / (v1 - v0) * (HEIGHT - 2 * PAD - 1))
        return x, y

    def dot(x: int, y: int, colour: tuple[int, int, int]) -> None:
        # Two pixels wide: a one-pixel line is lost on a phone's scaled-down mail.
        for px, py in ((x, y), (x, y - 1)):
            if 0 <= px < WIDTH and 0 <= py < HEIGHT:
                pixels[py][3 * px : 3 * px + 3] = bytes(colour)

    def line(a: tuple[int, int], b: tuple[int, int], colour: tuple[int, int, int]) -> None:
        (x0, y0), (x1, y1) = a, b
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            dot(x0 + round((x1 - x0) * i / steps), y0 + round((y1 - y0) * i / steps), colour)

    for n, (points, refs) in enumerate(series):
        for ref in refs:
            line(xy(t0, ref), xy(t1, ref), _GREY)
        colour = _COLOURS[n % len(_COLOURS)]
        for a, b in itertools.pairwise(points):
            line(xy(*a), xy(*b), colour)
    return _png(pixels)
