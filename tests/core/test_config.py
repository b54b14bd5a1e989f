"""Configuration: the example loads; each kind of bad input gets its exact message and exit 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.config import ConfigError, dump_config, load_config, parse_config
from tests.conftest import REPO

EXAMPLE = REPO / "config" / "example.yaml"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repsys", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


def test_example_config_loads_with_every_section() -> None:
    cfg = load_config(EXAMPLE)
    assert [m.id for m in cfg.machines] == ["cnc103", "cnc362", "cnc120"]
    assert cfg.machine("cnc362") is not None
    assert cfg.machine("cnc362").workcenter_code == "Honda Civic cnc 359 362"  # type: ignore[union-attr]
    assert cfg.machine("nope") is None


def test_demo_template_is_valid_once_filled() -> None:
    text = (REPO / "config" / "demo.yaml").read_text()
    text = text.replace("@REDIS_URL@", "redis://127.0.0.1:1/0").replace("@WORKDIR@", "/tmp/x")
    text = text.replace("@MQTT_PORT@", "1883").replace("@WEB_PORT@", "8080")
    text = text.replace("@OPCUA_PORT@", "48400").replace("@PLEX_PORT@", "8731")
    text = text.replace("@MAIL_PORT@", "2525").replace("@UDP_PORT@", "48500")
    assert re.findall(r"@[A-Z_]+@", text) == []  # every placeholder is one the demo fills
    cfg = parse_config(yaml.safe_load(text), file="demo.yaml")
    assert len(cfg.machines) >= 3


def test_check_config_prints_normalized_config_and_exits_0() -> None:
    result = run_cli("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    # Normalized: defaults the file did not write are filled in.
    assert printed["streams"]["partitions"] == 8
    assert printed["redis"]["mode"] == "standalone"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("redis:\n  hostname: x\n", "redis.hostname: unknown key"),
        ("typo_section: {}\n", "typo_section: unknown key"),
        (
            "streams:\n  partitions: many\n",
            "streams.partitions: Input should be a valid integer, unable to parse string as an"
            " integer",
        ),
        (
            "machines:\n  - {id: cnc1, workcenter_key: 1, workcenter_code: c}\n",
            "machines[0].pcn: required key is missing",
        ),
        (
            "machines:\n  - {id: 'bad id', pcn: 1, workcenter_key: 1, workcenter_code: c}\n",
            "machines[0].id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'",
        ),
        (
            "machines:\n"
            "  - {id: a, pcn: 1, workcenter_key: 1, workcenter_code: c}\n"
            "  - {id: a, pcn: 1, workcenter_key: 2, workcenter_code: d}\n",
            "machines: machine id 'a' appears twice",
        ),
        ("redis:\n  mode: sentinel\n", "redis: mode 'sentinel' needs a 'sentinel' section"),
        (
            "database:\n  password: hunter2\n",
            "database.password: a secret must be {env: NAME} or {file: PATH}, never written in"
            " the YAML",
        ),
        (
            "database:\n  password: {env: REPSYS_TEST_UNSET_VAR}\n",
            "database.password: environment variable REPSYS_TEST_UNSET_VAR is not set",
        ),
        (
            "redis:\n  url: redis://:hunter2@redis:6379/0\n",
            "redis.url: a password in the URL is refused: give it as password: {env: NAME} or"
            " {file: PATH}",
        ),
        (
            "database:\n  url: postgresql+psycopg://repsys:hunter2@db/repsys\n",
            "database.url: a password in the URL is refused: give it as password: {env: NAME}"
            " or {file: PATH}",
        ),
        (
            "database:\n  url: postgresql+psycopg://repsys@db/repsys?PassWord=hunter2\n",
            "database.url: a password in the URL is refused: give it as password: {env: NAME}"
            " or {file: PATH}",
        ),
        (
            "runner:\n  tb:\n    odbc:\n"
            "      connection_string: 'DSN=plex;UID=ws; pwd = hunter2'\n",
            "runner.tb.odbc.connection_string: a password in the connection string is refused:"
            " give it as password: {env: NAME} or {file: PATH} (appended as PWD=...)",
        ),
        ("- just\n- a list\n", "the top level must be a mapping of sections"),
        (
            "redis: {mode: cluster}\ncollector: {sink: {wait_replicas: 1}}\n",
            "collector.sink.wait_replicas: WAIT cannot confirm a batch with redis.mode cluster:"
            " set 0",
        ),
        (
            "redis: {socket_timeout_s: 1}\ncollector: {sink: {wait_replicas: 2}}\n",
            "collector.sink.wait_timeout_ms: must be below redis.socket_timeout_s",
        ),
        ("redis: [unclosed\n", "line 2: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ],
)
def test_bad_config_names_file_key_path_and_reason(tmp_path: Path, body: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(err.value) == f"{bad}: {message}"
    # The command line says the same and exits 2.
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == f"repsys: {bad}: {message}"
    assert result.stdout == ""


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("check-config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"repsys: {tmp_path / 'absent.yaml'}: cannot read: No such file or directory"
    )


def test_secrets_come_from_env_or_file_and_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "redis-password"
    secret_file.write_text("s3cret-from-file\n")
    monkeypatch.setenv("REPSYS_TEST_DB_PASSWORD", "s3cret-from-env")
    cfg = parse_config(
        {
            "database": {"password": {"env": "REPSYS_TEST_DB_PASSWORD"}},
            "redis": {"password": {"file": str(secret_file)}},
        }
    )
    assert cfg.database.password is not None
    assert cfg.database.password.get_secret_value() == "s3cret-from-env"
    assert cfg.redis.password is not None
    assert cfg.redis.password.get_secret_value() == "s3cret-from-file"
    dumped = dump_config(cfg)
    assert "s3cret" not in dumped
    assert yaml.safe_load(dumped)["database"]["password"] == "********"


def test_optional_env_secret_may_be_absent() -> None:
    cfg = parse_config({"redis": {"password": {"env": "REPSYS_TEST_UNSET_VAR", "optional": True}}})
    assert cfg.redis.password is None


def test_config_is_frozen() -> None:
    cfg = parse_config({})
    with pytest.raises(ValueError, match="frozen"):
        cfg.streams.partitions = 3  # type: ignore[misc]
