"""Golden cases: every case folder passes; the CLI reports differences and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rules.replay import case_dirs, run_case
from tests.conftest import REPO

CASES = REPO / "tests" / "rules" / "cases"


@pytest.mark.parametrize("case", case_dirs(CASES), ids=lambda p: p.name)
def test_golden_case(case: Path) -> None:
    result = run_case(case)
    assert result.problems == []


def rules_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repsys", "rules", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip


def test_rules_test_command_passes_the_cases_and_reports_a_difference(tmp_path: Path) -> None:
    ok = rules_cli("test", str(CASES))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == f"{len(case_dirs(CASES))} passed, 0 failed"
    assert "PASS tool_life_short (2 episodes)" in ok.stdout

    case = tmp_path / "tool_life_short"
    shutil.copytree(CASES / "tool_life_short", case)
    rows = [json.loads(x) for x in (case / "expected.jsonl").read_text().splitlines()]
    rows[0]["summary"] = "Tool 1 on CNC 120 is fine"
    (case / "expected.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:1]) + "\n")
    bad = rules_cli("test", str(tmp_path))
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        "FAIL tool_life_short",
        "  expected 1 episodes, got 2",
        "  episode[0].summary: expected 'Tool 1 on CNC 120 is fine', got 'Tool 1 on CNC 120 is "
        "not reaching tool life: changed at 212 of 348 parts'",
        "  episode[1]: unexpected tool_life_short 'T2': Tool 2 on CNC 120 is not reaching tool "
        "life: changed at 150 of 198 parts",
        "0 passed, 1 failed",
    ]


def test_rules_test_command_refuses_unreadable_input_with_exit_2(tmp_path: Path) -> None:
    case = tmp_path / "broken"
    shutil.copytree(CASES / "threshold", case)
    with (case / "input.jsonl").open("a") as f:
        f.write('{"machin": "cnc103", "name": "spindle_load", "value": 1, "ts": 1}\n')
    lines = (case / "input.jsonl").read_text().splitlines()
    result = rules_cli("test", str(case))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"repsys: {case / 'input.jsonl'}:{len(lines)}: unknown key 'machin'"
    )
