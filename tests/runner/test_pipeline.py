"""The pipeline framework: stop at the first failure, one outcome mail, external commands,
resume after a crash, graceful stop, poison pills, config errors with their key path."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.db.schema import ReportRequestRow, ReportRun, StepRun
from core.errors import ConfigError
from core.metrics import sample
from repsys.servers import wait_until
from runner.errors import StepFailed
from runner.outcome import notify_outcome
from runner.registry import build_pipelines
from runner.requests import submit
from runner.steps import StepContext, StepResult
from sim.accounting.ledger import Ledger
from sim.accounting.money import CENT
from tests.runner.conftest import Accounting, Harness, Mailbox

PY = sys.executable
NOW = datetime(2024, 7, 7, 9, 30, tzinfo=UTC)


def request_row(sessions: sessionmaker[Session], request_id: str) -> ReportRequestRow:
    with sessions() as s:
        row = s.get(ReportRequestRow, request_id)
        assert row is not None
        return row


def steps_of(sessions: sessionmaker[Session], request_id: str) -> list[tuple[int, str, str]]:
    with sessions() as s:
        return [
            (x.run_id, x.step, x.status)
            for x in s.scalars(
                select(StepRun).where(StepRun.request_id == request_id).order_by(StepRun.id)
            )
        ]


def mail_cfg(port: int) -> dict[str, Any]:
    return {
        "smtp": {"host": "127.0.0.1", "port": port, "sender": "repsys@plant.example"},
        "notify_to": ["controller@plant.example"],
    }


def test_failing_step_fails_the_request_and_the_failure_mail_is_sent_once(
    make_accounting: Callable[[Ledger], Accounting],
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    smtp: tuple[int, Mailbox],
    redis_client: redis.Redis,
) -> None:
    port, box = smtp
    ledger = Ledger.seeded()
    # A posting Plex lost half of: 202402 debits exceed credits by 0.01.
    ledger.postings[(123681, "10000-000-0000", 202402)][0] += CENT
    accounting = make_accounting(ledger)
    harness = make_runner(runner_config(accounting, runner=mail_cfg(port)), clock=lambda: NOW)
    row = submit(
        harness.sessions,
        redis_client,
        harness.cfg,
        kind="tb",
        params={"start": 202401, "end": 202403, "pcns": [123681]},
        requester="dan@plant.example",
    )
    assert harness.burst() == 1

    done = request_row(harness.sessions, row.id)
    assert done.state == "failed"
    assert done.error == (
        "step 'check_balanced' failed: PCN 123681 period 202402: debits "
        + done.error.split("debits ", 1)[1]  # type: ignore[union-attr]
    )
    assert done.error.endswith(  # type: ignore[union-attr]
        "by 0.01; the period's amounts come from the closed-period balances "
        "(ODBC accounting_v_Balance_e)"
    )
    statuses = [(step, status) for _, step, status in steps_of(harness.sessions, row.id)]
    assert statuses[-2:] == [("recreate_open", "completed"), ("check_balanced", "failed")]
    assert "report" not in [step for step, _ in statuses]  # stopped at the first failure
    assert done.result_path is None

    wait_until(lambda: len(box.messages) == 1, timeout=10, what="failure mail")
    mail = box.messages[0]
    assert mail["Subject"] == "TrialBalance Pipeline Failure"
    body = mail.get_content()
    assert "Failed step: check_balanced" in body and "by 0.01;" in body
    assert sorted(box.envelopes[0][1]) == ["controller@plant.example", "dan@plant.example"]

    # The same request delivered again (a duplicate entry) or a second notify: no mail.
    redis_client.xadd(keys.REPORT_QUEUE, {"v": "1", "body": _body(done)})
    assert harness.burst() == 1
    assert not notify_outcome(
        harness.cfg,
        harness.sessions,
        services=harness.services,
        metrics=None,
        request=done,
        run=None,
        ok=False,
    )
    assert len(box.messages) == 1
    assert (
        sample(
            harness.registry,
            "repsys_runner_step_failures_total",
            {"kind": "tb", "step": "check_balanced", "reason": "unbalanced"},
        )
        == 1
    )
    assert (
        sample(
            harness.registry,
            "repsys_runner_notifications_total",
            {"channel": "email", "outcome": "sent"},
        )
        == 1
    )


def _body(row: ReportRequestRow) -> str:
    from core.model import ReportRequest

    return ReportRequest(
        id=row.id, kind=row.kind, params=row.params, requester=row.requester, requested_at=NOW
    ).to_fields()["body"]


def test_success_mails_the_report_and_one_success_notice(
    seeded: Accounting,
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    smtp: tuple[int, Mailbox],
) -> None:
    port, box = smtp
    extra = {**mail_cfg(port), "tb": {"report_to": ["dan@plant.example"]}}
    harness = make_runner(runner_config(seeded, runner=extra), clock=lambda: NOW)
    row = submit(
        harness.sessions,
        harness.redis,
        harness.cfg,
        kind="tb",
        params={"start": 202401, "end": 202406},
        requester="scheduler",
    )
    assert harness.burst() == 1
    assert request_row(harness.sessions, row.id).state == "completed"
    wait_until(lambda: len(box.messages) == 2, timeout=10, what="two mails")
    by_subject = {m["Subject"]: m for m in box.messages}
    assert set(by_subject) == {"Trial Balance Report - 07-07-2024", "TrialBalance Pipeline Success"}
    report = by_subject["Trial Balance Report - 07-07-2024"]
    names = [part.get_filename() for part in report.iter_attachments()]
    assert names == ["TB-202401_to_202406_on_07-07_DM.xlsx"]
    assert "  11. report: completed" in by_subject["TrialBalance Pipeline Success"].get_content()


# --- external commands ------------------------------------------------------------------


def command_cfg(runner_config: Callable[..., RepsysConfig], **commands: Any) -> RepsysConfig:
    return runner_config(
        runner={
            "commands": commands,
            "pipelines": {"etl": {"steps": list(commands), "notify": []}},
        }
    )


def test_command_step_gets_parameters_and_fence_and_reports_rows(
    runner_config: Callable[..., RepsysConfig], make_runner: Callable[..., Harness]
) -> None:
    script = (
        "import os, json; "
        "print('fence', os.environ['REPSYS_FENCE'], 'plant', os.environ['REPSYS_PARAM_PLANT']); "
        "print('params', json.loads(os.environ['REPSYS_PARAMS'])); print('REPSYS_ROWS=42')"
    )
    cfg = command_cfg(runner_config, extract={"argv": [PY, "-c", script]})
    harness = make_runner(cfg)
    row = submit(
        harness.sessions,
        harness.redis,
        cfg,
        kind="etl",
        params={"plant": "albion"},
        requester="dan",
    )
    assert harness.burst() == 1
    assert request_row(harness.sessions, row.id).state == "completed"
    with harness.sessions() as s:
        step = s.scalars(select(StepRun).where(StepRun.request_id == row.id)).one()
    assert step.rows == 42
    assert step.output is not None
    assert "fence 1 plant albion" in step.output
    assert "params {'plant': 'albion'}" in step.output


def test_command_step_gets_only_the_environment_it_is_given(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runner's credentials stay with the runner; a command gets what is named."""
    monkeypatch.setenv("REPSYS_PLEX_PASSWORD", "hunter2")
    monkeypatch.setenv("PLANT_SHARE", "/mnt/share")
    # The REPSYS_* variables the runner sets for the request are not the point here.
    script = (
        "import os, json; print('env', json.dumps(sorted(k for k in os.environ"
        " if not k.startswith('REPSYS_') or k == 'REPSYS_PLEX_PASSWORD')))"
    )
    cfg = command_cfg(
        runner_config,
        extract={"argv": [PY, "-c", script], "inherit_env": ["PATH", "PLANT_SHARE"]},
    )
    harness = make_runner(cfg)
    row = submit(harness.sessions, harness.redis, cfg, kind="etl", params={}, requester="dan")
    assert harness.burst() == 1
    assert request_row(harness.sessions, row.id).state == "completed"
    with harness.sessions() as s:
        step = s.scalars(select(StepRun).where(StepRun.request_id == row.id)).one()
    assert step.output is not None
    # Python itself may add LC_CTYPE on a C locale; nothing else beyond the named two.
    names = set(json.loads(step.output.split("env ", 1)[1].splitlines()[0])) - {"LC_CTYPE"}
    assert names == {"PATH", "PLANT_SHARE"}


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (
            {"argv": [PY, "-c", "import sys; print('disk full'); sys.exit(3)"]},
            "step 'load' failed: command 'load' exited with status 3: disk full\n",
        ),
        (
            {"argv": [PY, "-c", "import time; time.sleep(30)"], "timeout_s": 0.5},
            "step 'load' failed: command 'load' timed out after 0.5 s: ",
        ),
    ],
)
def test_command_step_failures(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    command: dict[str, Any],
    error: str,
) -> None:
    cfg = command_cfg(runner_config, load=command)
    harness = make_runner(cfg)
    row = submit(harness.sessions, harness.redis, cfg, kind="etl", params={}, requester="dan")
    assert harness.burst() == 1
    done = request_row(harness.sessions, row.id)
    assert (done.state, done.error) == ("failed", error)


def test_unknown_step_name_is_a_config_error_with_its_path(
    runner_config: Callable[..., RepsysConfig],
) -> None:
    cfg = runner_config(runner={"pipelines": {"tb": {"steps": ["accounts", "periods", "nope"]}}})
    with pytest.raises(ConfigError) as err:
        build_pipelines(cfg.runner)
    assert str(err.value).startswith(
        "runner.pipelines.tb.steps[2]: unknown step 'nope' (known: accounts, check_balanced,"
    )


# --- crash, resume, stop -----------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs in this runner."""


class Recording:
    def __init__(self, name: str, log: list[tuple[str, int]], crash: bool = False) -> None:
        self.name = name
        self.log = log
        self.crash = crash

    def run(self, ctx: StepContext) -> StepResult:
        self.log.append((self.name, ctx.fence))
        if self.crash:
            self.crash = False
            raise Crash
        with ctx.fenced():  # a load, fenced like the real ones
            pass
        return StepResult(1)


def test_rerun_after_a_crash_resumes_at_the_first_unfinished_step(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
) -> None:
    cfg = runner_config(
        runner={
            "lease_ttl_s": 1.0,
            "claim_idle_s": 1.0,
            "pipelines": {"etl": {"steps": ["a", "b", "c"], "notify": []}},
        }
    )
    log: list[tuple[str, int]] = []
    pipeline = [Recording("a", log), Recording("b", log, crash=True), Recording("c", log)]
    first = make_runner(cfg, consumer="first", pipelines={"etl": pipeline})
    row = submit(first.sessions, first.redis, cfg, kind="etl", params={}, requester="dan")
    with pytest.raises(Crash):
        first.burst()
    assert request_row(first.sessions, row.id).state == "running"

    second = make_runner(cfg, consumer="second", pipelines={"etl": pipeline})
    # The entry is reclaimed once idle, the dead holder's lease has expired by then.
    wait_until(lambda: second.burst() == 1, timeout=15, what="reclaim")
    done = request_row(second.sessions, row.id)
    assert (done.state, done.attempts) == ("completed", 2)
    assert log == [("a", 1), ("b", 1), ("b", 2), ("c", 2)]
    statuses = steps_of(second.sessions, row.id)
    assert [(s, st) for _, s, st in statuses] == [
        ("a", "completed"),
        ("b", "running"),  # the crashed run's record stays as it was
        ("a", "skipped"),
        ("b", "completed"),
        ("c", "completed"),
    ]
    assert sample(second.registry, "repsys_runner_reclaimed_total") == 1


def test_a_stopping_runner_requeues_after_the_current_step(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
) -> None:
    cfg = runner_config(runner={"pipelines": {"etl": {"steps": ["a", "b"], "notify": []}}})
    log: list[tuple[str, int]] = []
    stop: list[Callable[[], None]] = []

    class StopDuring(Recording):
        def run(self, ctx: StepContext) -> StepResult:
            stop[0]()  # SIGTERM arrives while this step runs
            return super().run(ctx)

    harness = make_runner(cfg, pipelines={"etl": [StopDuring("a", log), Recording("b", log)]})
    stop.append(harness.runner.stopper.stop)
    row = submit(harness.sessions, harness.redis, cfg, kind="etl", params={}, requester="dan")
    assert harness.burst() == 1
    assert request_row(harness.sessions, row.id).state == "pending"
    assert harness.redis.xlen(keys.REPORT_QUEUE) == 1  # back in the queue, not in a PEL

    again = make_runner(
        cfg, consumer="again", pipelines={"etl": [Recording("a", log), Recording("b", log)]}
    )
    assert again.burst() == 1
    assert request_row(again.sessions, row.id).state == "completed"
    assert log == [("a", 1), ("b", 2)]


def test_a_request_that_keeps_crashing_runners_is_failed_as_a_poison_pill(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
) -> None:
    cfg = runner_config(runner={"max_attempts": 2})
    harness = make_runner(cfg)
    row = submit(
        harness.sessions, harness.redis, cfg, kind="tool_check", params={}, requester="dan"
    )
    with harness.sessions.begin() as s:
        stored = s.get(ReportRequestRow, row.id)
        assert stored is not None
        stored.attempts = 2
    assert harness.burst() == 1
    done = request_row(harness.sessions, row.id)
    assert (done.state, done.error) == (
        "failed",
        "gave up after 2 runs that did not finish (the runner stopped during each)",
    )
    with harness.sessions() as s:
        assert s.scalars(select(ReportRun)).all() == []


def test_step_failed_is_the_only_failure_a_step_may_raise_on_purpose() -> None:
    # The contract the steps rely on: StepFailed carries a reason for the metric label.
    assert StepFailed("x").reason == "step_failed"
    assert StepFailed("x", reason="odbc").reason == "odbc"
