"""Repeated warnings are rate limited per subject, with a count of what was suppressed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from core.logs import RateLimiter, configure_logging, get_logger


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def reference(
    events: list[tuple[float, str]], burst: int, window_s: float
) -> list[tuple[int, str, int]]:
    """(index, subject, suppressed) of the lines shown, written plainly from the rule:
    per subject a window opens at its first line, or at the first line a whole window
    after the current one opened; the first ``burst`` lines of a window are shown; a shown
    line reports how many were dropped since the last shown one of its subject."""
    opened: dict[str, float] = {}
    shown_in_window: dict[str, int] = {}
    dropped: dict[str, int] = {}
    out = []
    for i, (t, subject) in enumerate(events):
        if subject not in opened or t - opened[subject] >= window_s:
            opened[subject] = t
            shown_in_window[subject] = 0
        if shown_in_window[subject] < burst:
            shown_in_window[subject] += 1
            out.append((i, subject, dropped.get(subject, 0)))
            dropped[subject] = 0
        else:
            dropped[subject] = dropped.get(subject, 0) + 1
    return out


def run(limiter: RateLimiter, clock: FakeClock, events: list[tuple[float, str]]) -> list[Any]:
    shown = []
    for i, (t, subject) in enumerate(events):
        clock.now = t
        try:
            ev = limiter(None, "warning", {"event": "collector_dead_letter", "source": subject})
        except structlog.DropEvent:
            continue
        shown.append((i, subject, ev.get("suppressed", 0)))
    return shown


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=30), min_size=1, max_size=200),
    subjects=st.lists(st.sampled_from(["broker", "kepware", "machinetool"]), min_size=200),
    burst=st.integers(min_value=1, max_value=5),
)
def test_the_limiter_matches_the_rule(gaps: list[float], subjects: list[str], burst: int) -> None:
    t = 0.0
    events = []
    for gap, subject in zip(gaps, subjects, strict=False):
        t += gap
        events.append((t, subject))
    clock = FakeClock()
    limiter = RateLimiter(burst=burst, window_s=60.0, clock=clock)
    assert run(limiter, clock, events) == reference(events, burst, 60.0)


def test_info_lines_and_other_subjects_are_never_dropped() -> None:
    clock = FakeClock()
    limiter = RateLimiter(burst=1, window_s=60.0, clock=clock)
    limiter(None, "warning", {"event": "x", "reason": "bad_json", "id": "1"})
    with pytest.raises(structlog.DropEvent):
        # another id, same subject: dropped
        limiter(None, "warning", {"event": "x", "reason": "bad_json", "id": "2"})
    limiter(None, "warning", {"event": "x", "reason": "not_finite"})  # another reason
    limiter(None, "error", {"event": "x", "reason": "bad_json"})  # another level
    for _ in range(10):
        limiter(None, "info", {"event": "ticket_filed", "reason": "bad_json"})


@pytest.fixture
def json_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_a_burst_of_warnings_logs_a_few_lines_and_the_count(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")
    log = get_logger("test")
    for i in range(10_000):
        log.warning("collector_dead_letter", source="broker", reason="bad_json", n=i)
    log.warning("collector_dead_letter", source="kepware", reason="bad_json")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    broker = [x for x in lines if x.get("source") == "broker"]
    assert len(broker) == 5  # the default burst in the minute
    assert [x["n"] for x in broker] == [0, 1, 2, 3, 4]
    assert [x for x in lines if x.get("source") == "kepware"]
