"""``repsys web`` as an operator runs it: user and token admin, the one-shot check, serving."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import yaml

from core.config import load_config
from core.db import make_engine, session_factory
from repsys.cli import main
from repsys.servers import free_port, port_open, wait_until
from tests.conftest import REPO, TEST_MACHINES
from tests.web.conftest import csrf_of
from web import accounts
from web.cli import demo_processes


@pytest.fixture
def cfg_file(tmp_path, redis_url, sqlite_engine, sqlite_url):
    def write(web: dict[str, Any] | None = None, redis: str | None = None) -> str:
        data = {
            "machines": TEST_MACHINES,
            "redis": {"url": redis or redis_url},
            "database": {"url": sqlite_url},
            "logging": {"format": "json", "level": "INFO"},
            "web": {"cookie_secure": False, **(web or {})},
        }
        path = tmp_path / "repsys.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    return write


def repsys(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repsys", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def run_main(capsys, monkeypatch, *args: str, stdin: str = "", env: dict[str, str] | None = None):
    """``repsys ARGS`` in this process (the admin commands start no server)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_user_and_token_administration(cfg_file, capsys, monkeypatch) -> None:
    cfg = cfg_file()

    def run(*args: str, **kw):
        return run_main(capsys, monkeypatch, "-c", cfg, "web", *args, **kw)

    pw = "a long enough password\n"
    assert run(
        "user",
        "add",
        "kim",
        "--roles",
        "supervisor,controller",
        "--name",
        "Kim",
        "--password-stdin",
        stdin=pw,
    ) == (0, "user kim added\n", "")
    assert run("user", "add", "kim", "--roles", "supervisor", "--password-stdin", stdin=pw) == (
        2,
        "",
        "repsys web: username: user kim exists already\n",
    )
    assert run("user", "add", "lee", "--roles", "boss", "--password-stdin", stdin=pw) == (
        2,
        "",
        "repsys web: roles: unknown role 'boss'; roles are operator, supervisor, "
        "controller, admin\n",
    )
    assert run(
        "user", "add", "lee", "--roles", "operator", "--password-stdin", stdin="short\n"
    ) == (2, "", "repsys web: password: a password has at least 10 characters\n")
    assert run(
        "user",
        "add",
        "oli",
        "--roles",
        "operator",
        "--badge",
        "1002",
        "--pin-env",
        "T_PIN",
        env={"T_PIN": "12ab"},
    ) == (2, "", "repsys web: pin: a PIN is 4 to 8 digits\n")
    assert run(
        "user", "add", "oli", "--roles", "operator", "--badge", "1002", "--pin-env", "T_MISSING"
    ) == (2, "", "repsys web: pin: environment variable T_MISSING is not set\n")
    assert (
        run(
            "user",
            "add",
            "oli",
            "--roles",
            "operator",
            "--badge",
            "1002",
            "--pin-env",
            "T_PIN",
            env={"T_PIN": "2468"},
        )[0]
        == 0
    )
    assert run("user", "disable", "oli") == (0, "user oli disabled\n", "")
    assert run("user", "list")[1].splitlines() == [
        "kim\tcontroller,supervisor\t-\tactive",
        "oli\toperator\t1002\tdisabled",
    ]
    assert run("user", "passwd", "kim", "--password-stdin", stdin="another password!\n") == (
        0,
        "password of kim changed\n",
        "",
    )

    code, token, _ = run("token", "add", "teams", "--roles", "supervisor")
    assert code == 0 and token.startswith("rs_") and len(token.strip()) > 40
    assert run("token", "list") == (0, "teams\tsupervisor\tlive\n", "")
    assert run("token", "revoke", "teams") == (0, "token teams revoked\n", "")
    assert run("token", "revoke", "teams") == (2, "", "repsys web: name: no live token teams\n")

    # What was written works: kim logs in with the new password, the token is refused.
    engine = make_engine(load_config(cfg).database)
    try:
        with session_factory(engine)() as s:
            assert accounts.authenticate_password(s, "kim", "another password!") is not None
            assert accounts.authenticate_token(s, token.strip()) is None
            assert accounts.authenticate_badge(s, "1002", "2468") is None  # disabled
    finally:
        engine.dispose()


def test_check_is_the_one_shot_mode(cfg_file) -> None:
    ok = repsys("-c", cfg_file(), "web", "check")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "web: ready (database and redis answer; bootstrap users: none)\n"
    down = repsys("-c", cfg_file(redis=f"redis://127.0.0.1:{free_port()}/0"), "web", "check")
    assert down.returncode == 1
    assert down.stderr.splitlines()[-1] == "web: not ready: redis: ConnectionError"


def test_bad_web_config_exits_2_with_the_key_path(cfg_file, capsys, monkeypatch) -> None:
    path = cfg_file({"trusted_proxy": {"enabled": True}})
    assert run_main(capsys, monkeypatch, "-c", path, "web", "check") == (
        2,
        "",
        f"repsys: {path}: web.trusted_proxy: trusted_proxy.enabled needs at least one "
        "address in 'proxies'\n",
    )
    path = cfg_file(
        {"bootstrap_users": [{"username": "x", "roles": ["admin"], "password": "plain text"}]}
    )
    assert run_main(capsys, monkeypatch, "-c", path, "web") == (
        2,
        "",
        f"repsys: {path}: web.bootstrap_users[0].password: a secret must be "
        "{env: NAME} or {file: PATH}, never written in the YAML\n",
    )


def test_serve_bootstraps_users_answers_and_stops_on_sigterm(cfg_file) -> None:
    port, http_port = free_port(), free_port()
    cfg = cfg_file(
        {
            "bootstrap_users": [
                {"username": "boss", "roles": ["admin"], "password": {"env": "T_BOSS_PW"}},
                {
                    "username": "nobody",
                    "roles": ["operator"],
                    "password": {"env": "T_UNSET", "optional": True},
                },
            ]
        }
    )
    env = {**os.environ, "T_BOSS_PW": "bootstrap password"}
    env.pop("T_UNSET", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "repsys",
            "-c",
            cfg,
            "--http-port",
            str(http_port),
            "web",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        wait_until(lambda: port_open(port), timeout=30, what="repsys web")
        assert httpx.get(f"{base}/healthz").text == "ok\n"
        assert httpx.get(f"{base}/readyz").text == "ok\n"
        # The process's own observability port serves the same registry.
        assert (
            "repsys_web_requests_total" in httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
        )
        with httpx.Client(base_url=base) as c:
            token = csrf_of(c.get("/login").text)
            resp = c.post(
                "/login",
                data={"username": "boss", "password": "bootstrap password", "csrf_token": token},
            )
            assert resp.status_code == 303
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 10
        out = proc.stdout.read() if proc.stdout else ""
        assert '"event": "bootstrap_users_applied"' in out and '"users": ["boss"]' in out
        assert '"event": "bootstrap_user_skipped"' in out and '"username": "nobody"' in out
        assert '"event": "web_stopped"' in out
        assert "bootstrap password" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_demo_runs_the_web_app_with_its_accounts_secrets() -> None:
    [proc] = demo_processes()
    assert proc.name == "web" and proc.argv == ["web"]
    assert set(proc.env) == {"REPSYS_DEMO_PASSWORD", "REPSYS_DEMO_PIN"}
    assert len(proc.env["REPSYS_DEMO_PASSWORD"]) >= 10 and proc.env["REPSYS_DEMO_PIN"].isdigit()
    assert demo_processes()[0].env == proc.env  # the same secrets for the whole demo
