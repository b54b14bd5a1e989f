"""The plex section: the environment guard and every bad value get their exact message."""

from __future__ import annotations

import pytest

from core.config import ConfigError, parse_config
from core.config.plex import endpoint_problem


@pytest.mark.parametrize(
    ("environment", "url", "problem"),
    [
        ("simulator", "http://127.0.0.1:8731/DataSource/Service.asmx", None),
        ("simulator", "http://localhost:1/x", None),
        ("simulator", "http://[::1]:1/x", None),
        ("test", "https://testapi.plexonline.com/DataSource/Service.asmx", None),
        ("production", "https://api.plexonline.com/DataSource/Service.asmx", None),
        (
            "simulator",
            "https://api.plexonline.com/DataSource/Service.asmx",
            "environment 'simulator' needs a loopback endpoint, not host 'api.plexonline.com'",
        ),
        (
            "test",
            "https://api.plexonline.com/DataSource/Service.asmx",
            "environment 'test' but host 'api.plexonline.com' is not a Plex test host",
        ),
        (
            "production",
            "https://testapi.plexonline.com/DataSource/Service.asmx",
            "environment 'production' but host 'testapi.plexonline.com' is a Plex test host",
        ),
        (
            "production",
            "http://api.plexonline.com/DataSource/Service.asmx",
            "environment 'production' needs an https endpoint (Basic auth over http)",
        ),
        (
            "test",
            "https://127.0.0.1/DataSource/Service.asmx",
            "environment 'test' must not point at loopback; use 'simulator'",
        ),
        ("production", "ftp://x/y", "endpoint 'ftp://x/y' is not an http(s) URL"),
    ],
)
def test_environment_guard(environment: str, url: str, problem: str | None) -> None:
    assert endpoint_problem(environment, url) == problem


@pytest.mark.parametrize(
    ("plex", "message"),
    [
        (
            {"environment": "production", "endpoint": "https://testapi.plexonline.com/x"},
            "plex: environment 'production' but host 'testapi.plexonline.com' is a Plex test host",
        ),
        (
            {"environment": "test", "endpoint": "https://testapi.plexonline.com/x"},
            "plex: environment 'test' needs username and password",
        ),
        (
            {"password": "hunter2"},
            "plex.password: a secret must be {env: NAME} or {file: PATH}, never written in the "
            "YAML",
        ),
        (
            {"sender": {"claim_ttl_s": 60}},
            "plex: sender.claim_ttl_s 60 must exceed 185 "
            "(2 x (operation_timeout_s + rate_limit.max_wait_s) + 5)",
        ),
        (
            {"actions": {"lookup": {"data_source_key": 1, "inputs": {"@Ref": "{ref}"}}}},
            "plex.actions.lookup.inputs: input @Ref: unknown ticket field 'ref' (known: "
            "category, created_at, description, external_ref, kind, machine_id, note, note_ref, "
            "pcn, plex_key, plex_number, priority, reporter, severity, source, ticket_id, title, "
            "workcenter_key)",
        ),
        (
            {"actions": {"lookup": {"data_source_key": 1, "inputs": {"Ref": "x"}}}},
            "plex.actions.lookup.inputs: input name 'Ref' must start with '@'",
        ),
        (
            {"actions": {"status": {"data_source_key": 1, "inputs": {"@K": "{plex_key"}}}},
            "plex.actions.status.inputs: input @K: bad template '{plex_key': expected '}' before "
            "end of string",
        ),
        (
            {"rate_limit": {"per_minute": 0}},
            "plex.rate_limit.per_minute: Input should be greater than or equal to 1",
        ),
        (
            {"master_data_check": "loud"},
            "plex.master_data_check: Input should be 'fatal', 'warning' or 'off'",
        ),
        ({"surprise": 1}, "plex.surprise: unknown key"),
    ],
)
def test_bad_plex_config_is_refused_at_load(plex: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"plex": plex}, file="repsys.yaml")
    assert str(caught.value) == f"repsys.yaml: {message}"


def test_secret_from_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEX_PW", "s3cret")
    cfg = parse_config(
        {
            "plex": {
                "environment": "production",
                "endpoint": "https://api.plexonline.com/DataSource/Service.asmx",
                "username": "CompanyWs@plex.com",
                "password": {"env": "PLEX_PW"},
            }
        }
    )
    assert cfg.plex.password is not None
    assert cfg.plex.password.get_secret_value() == "s3cret"
    assert cfg.plex.rate_limit.per_minute == 200
    assert set(cfg.plex.actions.create) == {"maintenance_work_request", "quality_problem"}


def test_sim_plex_roles_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sim": {"plex": {"data_sources": {"teleport": {"key": 1, "name": "x"}}}}})
    assert str(caught.value).startswith(
        "<config>: sim.plex.data_sources: unknown role 'teleport' (known: create_work_request"
    )
