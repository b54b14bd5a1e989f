"""spindle_load_drift on a worn tool whose smoothed load dips under the clear level.

The demo filed cnc120's drift twice, 15-28 s apart: its load arrives twice (OPC UA and the
MQTT value topic), which makes the EWMA noisier, a dip under 80 % of the threshold
resolved the episode (``keep_firing_for_s`` was 0) and the next rise opened another one.
"""

from __future__ import annotations

from typing import Any

from core.config import RepsysConfig
from core.model import Signal
from rules.engine import Program
from rules.replay import replay

T0 = 1_700_000_000.0
#: The demo's drift rule; keep_firing_for_s as the test says.
DRIFT = {"name": "spindle_load_drift", "type": "spindle_load_drift", "threshold": 10,
         "baseline_samples": 10, "smoothing_samples": 5, "for_s": 5}  # fmt: skip


def _cfg(make_config: Any, **over: Any) -> RepsysConfig:
    section = {
        "group_wait_s": 0,
        "machines": {"cnc103": {"load_by_tool": False}},
        "rules": [{**DRIFT, **over}],
    }
    return make_config({"rules": section})


def _loads() -> list[Signal]:
    """A level of 35, a worn tool at 46, a dip to 40 for three seconds, 46 again."""
    values = [35.0] * 10 + [46.0] * 20 + [40.0] * 3 + [46.0] * 20
    return [
        Signal("cnc103", "spindle_load", v, source_ts=T0 + i, receive_ts=T0 + i)
        for i, v in enumerate(values)
    ]


def _episodes(cfg: RepsysConfig) -> list[tuple[str, str]]:
    rows = replay(Program(cfg), _loads()).ledger.rows()
    return [(r["rule"], r["state"]) for r in rows]


def test_a_dip_under_the_clear_level_is_the_same_episode(make_config: Any) -> None:
    assert _episodes(_cfg(make_config)) == [("spindle_load_drift", "firing")]


def test_without_keep_firing_the_dip_made_a_second_episode(make_config: Any) -> None:
    # What the default was: the same samples, two episodes and two tickets.
    assert _episodes(_cfg(make_config, keep_firing_for_s=0)) == [
        ("spindle_load_drift", "resolved"),
        ("spindle_load_drift", "firing"),
    ]
