"""A tool past its life is forecast as overdue (negative minutes), not as due now."""

from __future__ import annotations

from rules.types.tool_change_forecast import minutes_remaining


def test_past_life_is_negative_and_sorts_before_at_life() -> None:
    at_life = minutes_remaining(348, 348, 1, 30)
    overdue = minutes_remaining(348, 378, 1, 30)  # 30 parts over, 30 s each
    assert (at_life, overdue) == (0, -15)
    assert overdue < at_life
