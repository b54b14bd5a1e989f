"""Routing golden cases (tests/rules/routing_cases): events over simulated time → deliveries."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.routing.golden import case_folders, run_case

CASES = Path(__file__).parent / "routing_cases"


@pytest.mark.parametrize("folder", case_folders(CASES), ids=lambda p: p.name)
def test_routing_case(folder: Path) -> None:
    actual, expected = run_case(folder)
    assert actual == expected


@pytest.mark.parametrize("folder", case_folders(CASES), ids=lambda p: p.name)
def test_routing_case_through_checkpoints(folder: Path) -> None:
    # The live dispatcher stores its groups between passes: the same deliveries must come.
    actual, expected = run_case(folder, checkpoint=True)
    assert actual == expected


def test_every_behaviour_has_a_case() -> None:
    names = {p.name for p in case_folders(CASES)}
    assert {"grouping", "repeat", "inhibition", "levels_continue"} <= names
