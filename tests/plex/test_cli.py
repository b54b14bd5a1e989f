"""``repsys outbox`` and ``repsys plex`` as operations staff use them.

The commands run in-process through ``repsys.cli.main`` (a subprocess per command costs
seconds of imports each); test_exactly_once.py runs the sender as a real process.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
import yaml

import core.cli
import plex.commands
from core.db.schema import Ticket
from repsys.cli import main
from tests.plex.conftest import SIM_PASSWORD_ENV, Canned, add_tickets, build_actions
from tests.plex.test_sender import make_sender


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class _Stderr:
    """Whatever ``sys.stderr`` is at the moment of writing (pytest swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture
def run(capsys, monkeypatch, sim_password):
    # configure_logging caches loggers bound to this test's captured stderr; later tests
    # would write to a closed file. In-process runs keep structlog's uncached defaults.
    monkeypatch.setattr(core.cli, "configure_logging", lambda *a, **k: None)
    monkeypatch.setattr(plex.commands, "configure_logging", lambda *a, **k: None)
    # What the real configure_logging does for these commands, without caching: logs go to
    # stderr, errors only (as `repsys plex` sets), so stdout holds only the answer.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )

    def runner(config: str, *args: str, password: str | None = None) -> Result:
        monkeypatch.setenv(SIM_PASSWORD_ENV, sim_password if password is None else password)
        capsys.readouterr()  # drop what earlier steps of the test printed
        try:
            code = main(["-c", config, *args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    yield runner
    structlog.reset_defaults()


def config_file(tmp_path, cfg) -> str:
    data = {
        "machines": [m.model_dump() for m in cfg.machines],
        "redis": {"url": cfg.redis.url},
        "database": {"url": cfg.database.url},
        "logging": {"format": "json", "level": "WARNING"},
        "plex": {
            "endpoint": cfg.plex.endpoint,
            "username": cfg.plex.username,
            "password": {"env": SIM_PASSWORD_ENV},
        },
    }
    path = tmp_path / "repsys.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_outbox_list_show_replay_cancel(plex_config, sim, sessions, redis_client, tmp_path, run):
    cfg = plex_config()
    config = config_file(tmp_path, cfg)
    a, b, c = add_tickets(sessions, cfg, 3, prefix="RS-CLI")
    sim.faults.configure({"queue": ["error_body"]})
    make_sender(cfg, sessions, redis_client).run_once()

    listing = run(config, "outbox", "list", "--state", "dead")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["id", "state", "external_ref", "machine", "plex", "try", "title"]
    assert len(lines) == 2
    assert lines[1].split()[:3] == [str(a), "dead", "RS-CLI00000"]
    assert lines[1].endswith("[data_source_error]")

    shown = run(config, "outbox", "show", "RS-CLI00000")
    assert shown.returncode == 0, shown.stderr
    body, _, history = shown.stdout.partition("history:\n")
    assert json.loads(body)["last_error_reason"] == "data_source_error"
    assert [line.split()[2] for line in history.splitlines()] == ["created", "claimed", "dead"]

    refused = run(config, "outbox", "replay", str(b), "--who", "dana")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"repsys outbox: ticket {b} is filed; only dead tickets replay"

    replayed = run(config, "outbox", "replay", "--all-dead", "--who", "dana")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == f"replay: ticket {a} (RS-CLI00000) is pending"

    [d] = add_tickets(sessions, cfg, 1, prefix="RS-CAN")
    cancelled = run(config, "outbox", "cancel", "RS-CAN00000", "--who", "dana")
    assert cancelled.returncode == 0, cancelled.stderr
    with sessions() as s:
        assert s.get(Ticket, d).state == "cancelled"
    missing = run(config, "outbox", "show", "RS-NOPE")
    assert (missing.returncode, missing.stderr.strip()) == (1, "repsys outbox: no ticket 'RS-NOPE'")
    assert run(config, "outbox", "replay").returncode == 2

    once = run(config, "plex-sender", "--once", password=None)
    assert once.returncode == 0, once.stderr
    with sessions() as s:
        assert s.get(Ticket, a).state == "filed"
    assert len(sim.tickets()) == 3
    del c


def test_plex_call_template_and_workcenter_check(plex_config, sim, tmp_path, run, redis_client):
    cfg = plex_config()
    config = config_file(tmp_path, cfg)
    call = run(
        config,
        "plex",
        "call",
        "4814",
        "@PCNs=123681",
        "@Period_Start=202401",
        "@Period_End=202401",
        password=None,
    )
    assert call.returncode == 0, call.stderr
    result = json.loads(call.stdout)
    assert result["message"] == "Success"
    assert next(iter(result["result_sets"][0][0])) == "Account_No"

    template = run(config, "plex", "template", "910001", password=None)
    assert template.stdout.split() == [
        "@Workcenter_Key",
        "@Title",
        "@Description",
        "@Priority",
        "@Requested_By",
        "@External_Ref",
    ]
    check = run(config, "plex", "check-workcenters", password=None)
    assert (check.returncode, check.stdout.strip()) == (
        0,
        "all 3 machines' workcenters exist in Plex",
    )
    bad = run(config, "plex", "call", "910001", "Workcenter_Key=1", password=None)
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "repsys plex call: 'Workcenter_Key=1' is not @Name=value",
    )
    refused = run(config, "plex", "call", "910001", "@Workcenter_Key=1", password="wrong")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "repsys plex call: Plex refused the credentials (HTTP 401) [auth]"
    )
    assert build_actions(cfg, redis_client).workcenters()[61324] == "cnc103"


def test_sender_exits_1_on_fatal_master_data_mismatch(plex_config, sim, tmp_path, run):
    cfg = plex_config()
    path = config_file(tmp_path, cfg)
    data = yaml.safe_load(Path(path).read_text())
    data["plex"]["master_data_check"] = "fatal"
    data["machines"].append(
        {"id": "cnc999", "pcn": 123681, "workcenter_key": 69999, "workcenter_code": "cnc999"}
    )
    Path(path).write_text(yaml.safe_dump(data))
    result = run(path, "plex-sender", "--once", password=None)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "repsys plex-sender: master data does not match Plex:",
        "  machine cnc999: workcenter_key 69999 (cnc999) does not exist in Plex",
    ]


def test_plex_call_reads_a_real_answer_with_options_anywhere(
    plex_config, tmp_path, run, canned: Canned
):
    """Issue 26's command: options after the key, an answer in real Plex's shape."""
    golden = Path(__file__).resolve().parent / "golden"
    canned.body = (golden / "execute_data_source_9726.xml").read_bytes()
    path = config_file(tmp_path, plex_config())
    data = yaml.safe_load(Path(path).read_text())
    data["plex"]["endpoint"] = canned.url
    Path(path).write_text(yaml.safe_dump(data))
    call = run(
        path,
        "plex",
        "call",
        "9726",
        "--name",
        "Daily_Shift_Report_Get",
        "@Start_Date=05/01/2024",
        "@End_Date=05/01/2024",
        password=None,
    )
    assert call.returncode == 0, call.stderr
    expected = json.loads((golden / "execute_data_source_9726.json").read_text())
    assert json.loads(call.stdout)["result_sets"] == expected["result_sets"]
    unknown = run(path, "plex", "call", "9726", "--bogus", "@A=b", password=None)
    assert unknown.returncode == 2
    assert "unrecognized arguments: --bogus" in unknown.stderr
