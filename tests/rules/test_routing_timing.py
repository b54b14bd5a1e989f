"""Group timing held to a plain reference on hypothesis-generated event times.

The reference writes Alertmanager's rule for one group out as beats: the first message
``group_wait`` after the first event, then a beat every ``group_interval``; a beat sends
the events that arrived by then (at or before it), or, with nothing new, a reminder when
``repeat_interval`` has passed since the last message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.config.notify import NotifyConfig
from rules.routing.dispatch import Dispatcher, Notice, simulate
from rules.routing.tree import build_tree

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def reference(
    times: list[int], wait: int, interval: int, repeat: int, until: int
) -> list[tuple[int, int, bool]]:
    """``(beat, events sent, reminder)`` of one group whose tickets stay open."""
    out = []
    beat = times[0] + wait
    sent = 0
    last = None
    while beat <= until:
        new = sum(1 for t in times if t <= beat) - sent
        if new:
            out.append((beat, new, False))
            sent += new
            last = beat
        elif last is not None and beat - last >= repeat:
            out.append((beat, sent, True))
            last = beat
        beat += interval
    return out


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 400), min_size=1, max_size=8),
    wait=st.integers(0, 60),
    interval=st.integers(1, 300),
    repeat=st.integers(1, 2000),
)
def test_group_timing_matches_the_reference(
    gaps: list[int], wait: int, interval: int, repeat: int
) -> None:
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    until = times[-1] + 3000
    cfg = NotifyConfig.model_validate(
        {
            "defaults": {
                "group_by": ["machine"],
                "group_wait_s": wait,
                "group_interval_s": interval,
                "repeat_interval_s": repeat,
            },
            "receivers": [{"name": "r"}],
            "route": {"receiver": "r"},
        }
    )
    notices = [
        Notice(
            f"{i}:filed:0",
            str(i),
            "filed",
            {"machine": "cnc103", "event": "filed"},
            T0 + timedelta(seconds=t),
        )
        for i, t in enumerate(times)
    ]
    got = simulate(Dispatcher(build_tree(cfg)), notices, T0 + timedelta(seconds=until))
    actual = [(int((d.at - T0).total_seconds()), len(d.notices), d.repeat) for d in got]
    assert actual == reference(times, wait, interval, repeat, until)
