"""Machine-page charts over windows longer than the streams hold, from the signal history.

Reference: every charted sample of the machine (no subject, a finite number) with a
source time inside the window, in stream order, whatever part of it the capped stream
still holds: the stream's tail and the history (Parquet, via ``repsys history``'s writer)
must together give exactly those, none twice. Hypothesis draws the samples, where the
stream was trimmed (nothing, partly, the whole window, everything) and how far the
bounded stream read goes.
"""

from __future__ import annotations

import re
import tempfile
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import keys
from core.model import Signal
from history.read import HistorySeries
from tests.history.test_writer import writer_for
from tests.web.conftest import RunningWeb
from web.live import CHARTED_SIGNALS
from web.machine_charts import thin, window_signals

P = 2
MACHINE = "cnc101"
OTHER = "cnc103"  # shares nothing with the reference; its samples must not leak in


def _partition(machine: str) -> int:
    return keys.partition_of(machine, P)


def _plant(redis: Any, draw_minutes: list[tuple[int, str, float]], now: float) -> list[Signal]:
    """XADD the samples ``minutes`` before ``now`` (ids at their times), in time order."""
    out = []
    seq: dict[tuple[int, int], int] = {}
    for minutes_ago, who, value in sorted(draw_minutes, key=lambda s: -s[0]):
        ts = now - minutes_ago * 60
        for name in ("spindle_load", "cycle_time", "program"):
            machine = MACHINE if who == "m" else OTHER
            v: Any = value if name != "program" else "O1"
            sig = Signal(machine, name, v, source_ts=ts, receive_ts=ts)
            p, ms = _partition(machine), int(ts * 1000)
            n = seq[p, ms] = seq.get((p, ms), -1) + 1
            redis.xadd(keys.signal_stream(p), sig.to_fields(), id=f"{ms}-{n}")
            out.append(sig)
    return out


def reference(signals: list[Signal], since: float) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for s in signals:
        if s.machine == MACHINE and s.name in CHARTED_SIGNALS and s.source_ts >= since:
            out.setdefault(s.name, []).append((s.source_ts, float(s.value)))  # type: ignore[arg-type]
    return out


samples = st.lists(
    st.tuples(st.integers(1, 600), st.sampled_from(["m", "m", "o"]), st.floats(0, 200)),
    min_size=1,
    max_size=80,
    unique_by=lambda s: (s[0], s[1]),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drawn=samples,
    window_min=st.integers(5, 700),
    cut_min=st.one_of(st.none(), st.integers(0, 620)),
    scan=st.integers(1, 400),
)
def test_a_long_window_is_the_stream_and_the_history_together(
    drawn: list[tuple[int, str, float]],
    window_min: int,
    cut_min: int | None,
    scan: int,
    make_config: Any,
    redis_url: str,
    redis_client: Any,
) -> None:
    redis_client.flushall()
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config({"streams": {"partitions": P}, "storage": {"type": "local", "root": tmp}})
        signals = _plant(redis_client, drawn, now)
        writer_for(cfg, redis_url).drain()
        stream = keys.signal_stream(_partition(MACHINE))
        if cut_min == 0:
            redis_client.xtrim(stream, maxlen=0, approximate=False)  # the stream holds nothing
        elif cut_min is not None:
            cut = int((now - cut_min * 60) * 1000)
            redis_client.xtrim(stream, minid=f"{cut}-0", approximate=False)
        since = now - window_min * 60
        archive = HistorySeries(cfg)
        page = max(1, scan // 3)
        got = window_signals(redis_client, MACHINE, partitions=P, since=since,
                             archive=archive, scan=scan, page=page)  # fmt: skip
        assert got.points == reference(signals, since)
        assert got.covered_from is None
        # Without the history the chart starts where the stream's read does, and says so.
        alone = window_signals(redis_client, MACHINE, partitions=P, since=since, archive=None,
                               scan=scan)  # fmt: skip
        for name, points in alone.points.items():
            assert set(points) <= set(got.points[name])
        if alone.points != got.points:
            assert alone.covered_from is not None and alone.covered_from > since


def test_thin_keeps_every_bucket_extreme() -> None:
    points = [(float(t), float((t * 37) % 101)) for t in range(10_000)]
    points[5_000] = (5_000.0, 1_000.0)  # one spike
    kept = thin(points, 600)
    assert len(kept) <= 600 and kept == sorted(kept)
    assert (5_000.0, 1_000.0) in kept
    assert thin(points[:100], 600) == points[:100]


POLYLINE = re.compile(r'<polyline class="chart-line" points="([^"]*)"')


def _points_charted(text: str) -> list[int]:
    return [len(p.split()) for p in POLYLINE.findall(text)]


def test_the_machine_page_charts_eight_hours_with_the_stream_trimmed_to_one(
    start_web: Any, redis_url: str, redis_client: Any, tmp_path: Any
) -> None:
    sections = {"streams": {"partitions": P},
                "storage": {"type": "local", "root": str(tmp_path / "store")}}  # fmt: skip
    web: RunningWeb = start_web(sections)
    plain: RunningWeb = start_web(sections, history_series=None, users=False)
    now = time.time()
    drawn = [(m, "m", float(m % 50)) for m in range(1, 6 * 60)]  # a sample a minute, 6 h
    _plant(redis_client, drawn, now)
    writer_for(web.cfg, redis_url).drain()
    cut = int((now - 60 * 60) * 1000)
    redis_client.xtrim(keys.signal_stream(_partition(MACHINE)), minid=f"{cut}-0",
                       approximate=False)  # fmt: skip

    page = web.login("sam").get("/machines/cnc101?minutes=480")
    assert page.status_code == 200
    assert (
        "Last 8 h 00 min" in page.text
        and 'aria-current=page href="/machines/cnc101?minutes=480"' in page.text
    )
    # spindle_load and cycle_time, one point a minute for 6 h: the history's 5 h too.
    assert _points_charted(page.text) == [len(drawn)] * 2
    assert "machine-charts-from" not in page.text

    alone = plain.login("sam").get("/machines/cnc101?minutes=480")
    assert all(n < 61 for n in _points_charted(alone.text))
    assert 'id="machine-charts-from"' in alone.text
    # The last hour needs no history; a window out of bounds is refused.
    assert web.login("sam").get("/machines/cnc101?minutes=99999").status_code == 422
