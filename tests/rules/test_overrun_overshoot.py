"""A counter that overshoots the life and is changed at once is no overrun.

The soak (``repsys soak``) found it: a counter jump of 50 on a tool at 309 of 348 read
359, the tool was changed at that very reading, and ``tool_life_overrun`` filed "Tool 1
... is past its tool life: 359 of 348 parts and not changed" next to the counter-jump
ticket: two tickets for one problem, one of them wrong.
"""

from __future__ import annotations

from core.config import parse_config
from core.model import Signal
from rules.engine import Program
from rules.replay import DEFAULT_MACHINES, replay

T0 = 1_700_000_000.0


def _program() -> Program:
    cfg = parse_config(
        {
            "machines": DEFAULT_MACHINES,
            "plant": {"timezone": "America/Chicago"},
            "rules": {
                "group_wait_s": 0,
                "machines": {"cnc120": {"tools": {"T1": {"life": 348}}}},
                "rules": [{"name": "tool_life_overrun", "type": "tool_life_overrun"}],
            },
        }
    )
    return Program(cfg)


def _signal(name: str, value: int, ts: float, attrs: dict[str, str]) -> Signal:
    return Signal(
        machine="cnc120",
        name=name,
        value=value,
        source_ts=ts,
        receive_ts=ts,
        subject="T1",
        attrs=attrs,
    )


def _readings(*values: int) -> list[Signal]:
    out = []
    for n, v in enumerate(values):
        ts = T0 + 60.0 * n
        if v < 0:  # a tool change
            out.append(_signal("tool_change", 0, ts, {}))
        else:
            for name in ("machining_event", "tool_life"):  # both report each reading
                attrs = {"pallet": "1", "counter": str(v)} if name == "machining_event" else {}
                out.append(_signal(name, v, ts, attrs))
    return out


def _fired(*values: int) -> list[tuple[str, str]]:
    rows = replay(_program(), _readings(*values)).ledger.rows()
    return [(r["started_at"], r["summary"]) for r in rows]


def test_a_jump_past_the_life_changed_at_once_is_no_overrun() -> None:
    assert _fired(307, 308, 309, 359, -1, 1, 2) == []


def test_a_tool_used_again_past_its_life_is_an_overrun() -> None:
    [(started, summary)] = _fired(308, 309, 359, 360, -1, 1)
    assert started == "2023-11-14T22:16:20.000+00:00"  # the reading of 360
    assert summary.endswith("360 of 348 parts and not changed")
    # Reaching the life and going on is an overrun at the first reading past it.
    [(started, _)] = _fired(347, 348, 349, 350)
    assert started == "2023-11-14T22:15:20.000+00:00"
