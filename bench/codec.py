"""Signal codec: encode + decode per second, beside raw json.dumps/json.loads of the same data.

Every signal is encoded once by the collector and decoded once by a rules worker, so this
bounds what one core can carry. The baseline is the least any codec must do: serialize
and parse the same fields with the standard library's json.
"""

from __future__ import annotations

import json
import time

from core.model import Quality, Signal

N = 200_000


def _rate(fn: object, n: int) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return n / (time.perf_counter() - started)


def main() -> None:
    signals = [
        Signal(
            machine=f"cnc{i % 500}",
            name="spindle_load",
            value=float(i % 97),
            quality=Quality.GOOD,
            source_ts=1.7e9 + i,
            receive_ts=1.7e9 + i + 0.01,
            subject=f"T{i % 12}",
        )
        for i in range(N)
    ]

    def ours() -> None:
        for s in signals:
            Signal.from_fields(s.to_fields())

    raw = [
        {
            "m": s.machine,
            "n": s.name,
            "x": s.value,
            "q": "good",
            "ts": s.source_ts,
            "rts": s.receive_ts,
            "s": s.subject,
        }
        for s in signals
    ]

    def baseline() -> None:
        for d in raw:
            json.loads(json.dumps(d))

    base = _rate(baseline, N)
    got = _rate(ours, N)
    print(
        f"codec: {got:,.0f} signals/s encode+decode; raw json baseline {base:,.0f}/s; "
        f"ratio {got / base:.2f}"
    )


if __name__ == "__main__":
    main()
