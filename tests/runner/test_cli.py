"""The commands: ``repsys request`` (refusals, --wait progress), ``repsys queue``,
``repsys runner --burst``, ``repsys scheduler --fire/--list``, and bad configuration.

The waiting requester is a real process (it prints progress while a runner works); the
other commands run through ``repsys.cli.main`` in this process, the same code path
without paying the interpreter start-up each time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine

from repsys.cli import main
from tests.conftest import REPO, _merge
from tests.runner.conftest import SIM_PASSWORD, SIM_PASSWORD_ENV, Accounting
from tests.runner.procs import write_config

#: A structlog console line; logs are not the command's output.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


@dataclass
class Result:
    returncode: int
    raw_stdout: str
    stderr: str

    @property
    def stdout(self) -> str:
        return "".join(
            line for line in self.raw_stdout.splitlines(keepends=True) if not LOG_LINE.match(line)
        )


@pytest.fixture
def repsys(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.setenv(SIM_PASSWORD_ENV, SIM_PASSWORD)
    # The commands configure logging for the whole process onto the captured stderr, and
    # structlog caches its loggers: in this process, logging stays as the tests set it.
    monkeypatch.setattr("core.cli.configure_logging", lambda *args: None)
    monkeypatch.setattr("runner.commands.configure_logging", lambda *args: None)

    import runner.commands  # noqa: F401 - loaded now so its configure_logging can be replaced

    def run(config: Path, *args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(["-c", str(config), *args])
        except SystemExit as exc:  # bad configuration exits from inside the command
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def test_request_wait_runner_burst_and_queue(
    seeded: Accounting,
    redis_url: str,
    sqlite_url: str,
    sqlite_engine: Engine,
    tmp_path: Path,
    repsys: Callable[..., Result],
) -> None:
    config = write_config(
        tmp_path / "repsys.yaml",
        redis_url=redis_url,
        db_url=sqlite_url,
        accounting=seeded,
        output_dir=tmp_path / "out",
    )

    refused = repsys(config, "request", "tb", "--start", "202405", "--end", "202401")
    assert refused.returncode == 2
    assert refused.stderr == (
        "repsys: request refused: start period 202405 is after end period 202401\n"
    )

    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "repsys",
            "-c",
            str(config),
            "request",
            "tb",
            "--start",
            "202401",
            "--end",
            "202406",
            "--pcn",
            "123681",
            "--requester",
            "dan",
            "--wait",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, SIM_PASSWORD_ENV: SIM_PASSWORD},
    )
    first_line = waiting.stdout.readline()  # type: ignore[union-attr]
    request_id, name, state = first_line.split()
    assert (name, state) == ("TB_202401_to_202406", "pending")

    burst = repsys(config, "runner", "--burst")
    assert burst.returncode == 0, burst.stderr
    assert burst.stdout == "1 queue entries handled\n"

    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    lines = out.splitlines()
    progress = [line.split(" ", 1)[1] for line in lines if line[:2].isdigit()]
    assert progress[0] == "running"
    assert progress[1:12] == [
        "running year_category_types",
        "running accounts",
        "running periods",
        "running period_ranges",
        "running start_period_update",
        "running closed_balances",
        "running open_activity",
        "running recreate_closed",
        "running recreate_open",
        "running check_balanced",
        "running report",
    ]
    assert progress[-1] == "completed"
    assert lines[-2].startswith("report: ") and lines[-2].endswith(".xlsx")
    assert lines[-1] == "completed"

    queue = repsys(config, "queue")
    assert queue.returncode == 0
    assert request_id in queue.stdout and "TB_202401_to_202406" in queue.stdout
    show = repsys(config, "queue", "--show", request_id)
    assert " 11 report               completed rows=" in show.stdout
    cancel = repsys(config, "queue", "--cancel", request_id)
    assert (cancel.returncode, cancel.stdout) == (1, "not pending: nothing to cancel\n")


def test_scheduler_fire_and_list(
    redis_url: str,
    sqlite_url: str,
    sqlite_engine: Engine,
    tmp_path: Path,
    repsys: Callable[..., Result],
) -> None:
    config = tmp_path / "repsys.yaml"
    config.write_text(
        yaml.safe_dump({"redis": {"url": redis_url}, "database": {"url": sqlite_url}})
    )
    listed = repsys(config, "scheduler", "--list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "tb_monthly",
        "escalation_first",
        "escalation_second",
        "escalation_third",
        "tool_check",
    ]
    fired = repsys(config, "scheduler", "--fire", "tool_check")
    assert fired.returncode == 0, fired.stderr
    assert fired.stdout.startswith("sched-tool_check-") and fired.stdout.endswith(
        " Tool_check pending\n"
    )
    unknown = repsys(config, "scheduler", "--fire", "nope")
    assert (unknown.returncode, unknown.stderr) == (2, "repsys: unknown schedule 'nope'\n")


def _bad(tmp_path: Path, runner: dict[str, Any]) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(_merge({"redis": {"url": "redis://127.0.0.1:1/0"}}, {"runner": runner}))
    )
    return path


def test_bad_runner_configuration_exits_2_with_the_key_path(
    tmp_path: Path, repsys: Callable[..., Result]
) -> None:
    bad = _bad(tmp_path, {"lease_ttl_s": 0})
    result = repsys(bad, "runner", "--burst")
    assert result.returncode == 2
    assert result.stderr == (
        f"repsys: {bad}: runner.lease_ttl_s: Input should be greater than 0.2\n"
    )
    bad = _bad(
        tmp_path,
        {"pipelines": {"tb": {"steps": ["accounts", "nope"]}}, "scheduler": {"schedules": []}},
    )
    result = repsys(bad, "runner", "--burst")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "repsys: runner.pipelines.tb.steps[1]: unknown step 'nope' (known: accounts,"
    )
