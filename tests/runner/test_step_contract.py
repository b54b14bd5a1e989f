"""The generic step contract knows nothing of the trial balance; TB steps get their sources.

``runner/steps.py`` imports no ``runner.tb`` module; a step that prefetches declares it by
the ``Prefetching`` protocol; data between steps goes through typed ``Handoff`` slots, one
value per run; the registry gives the configured ``TbSources`` to the steps that read Plex.
"""

from __future__ import annotations

import ast
from typing import Any

from core.config import RepsysConfig
from runner.registry import build_pipeline
from runner.steps import Handoff, Prefetching, Services, StepContext
from runner.tb.common import SourcedStep
from runner.tb.extract import OpenActivity
from runner.tb.handoff import TB_HANDOFF, TbHandoff
from runner.tb.report import Report
from runner.tb.source import TbSources
from tests.conftest import REPO


def test_the_step_contract_imports_nothing_of_the_trial_balance() -> None:
    tree = ast.parse((REPO / "runner" / "steps.py").read_text(encoding="utf-8"))
    modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in modules if m.startswith("runner.tb")] == []


def test_prefetching_is_declared() -> None:
    assert isinstance(OpenActivity(), Prefetching)
    assert not isinstance(Report(), Prefetching)


def _ctx() -> StepContext:
    none: Any = None
    return StepContext(none, none, none, none, Services(), none)


def test_a_handoff_is_one_typed_value_per_run() -> None:
    ctx = _ctx()
    value = ctx.handoff(TB_HANDOFF)
    assert isinstance(value, TbHandoff)
    assert ctx.handoff(TB_HANDOFF) is value
    assert _ctx().handoff(TB_HANDOFF) is not value
    counter = Handoff("counter", list[int])
    ctx.handoff(counter).append(1)
    assert ctx.handoff(counter) == [1]
    assert ctx.handoff(TB_HANDOFF) is value


def test_the_registry_gives_the_sources_to_the_steps_that_read_plex(
    runner_config: Any, seeded: Any
) -> None:
    cfg: RepsysConfig = runner_config(seeded)
    sources = TbSources()
    steps = build_pipeline(cfg.runner, "tb", sources)
    sourced = [s for s in steps if isinstance(s, SourcedStep)]
    assert {s.name for s in sourced} == {
        "year_category_types",
        "accounts",
        "periods",
        "closed_balances",
        "open_activity",
    }
    assert all(s.sources is sources for s in sourced)
