"""Two pods' worth of processes: the runner writes a TB to the object store, the web serves it.

``repsys runner --burst`` and ``repsys web`` run as separate child processes, each in its
own working directory with its own ``runner.output_dir`` (as two pods with their own
disks), sharing only Redis, the database and the object store: Azurite (Azure Blob) in
one case, moto's S3-compatible server in the other. A TB requested through the web is
downloaded from the web, byte for byte the file the runner wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import Engine, select

from core.config.storage import StorageConfig
from core.db import session_factory
from core.db.schema import ReportRequestRow
from core.storage import open_store
from repsys.servers import wait_until
from tests.conftest import REPO, TEST_MACHINES, _merge
from tests.storage.conftest import storage_env, storage_section
from tests.storage.servers import free_port
from tests.web.conftest import (  # noqa: F401 - fixtures used by name
    PASSWORD,
    SIM_PASSWORD_ENV,
    Accounting,
    add_users,
    csrf_of,
    plex_world,
)


def _config(path: Path, base: dict[str, Any], output_dir: Path, **extra: Any) -> Path:
    data = _merge(base, {"runner": {"output_dir": str(output_dir)}, **extra})
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _env(kind: str) -> dict[str, str]:
    return {
        **os.environ,
        **storage_env(kind),
        SIM_PASSWORD_ENV: "web-test-secret",
        "PYTHONPATH": str(REPO),
    }


@pytest.fixture
def web_pod(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("kind", ["azure", "s3"])
def test_tb_written_by_the_runner_pod_is_downloaded_from_the_web_pod(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_url: str,
    sqlite_url: str,
    sqlite_engine: Engine,
    plex_world: Accounting,  # noqa: F811 - the fixture imported above
    web_pod: list[subprocess.Popen[bytes]],
) -> None:
    server = request.getfixturevalue("azurite_server" if kind == "azure" else "s3_server")
    bucket = f"reports{uuid.uuid4().hex[:8]}"
    if kind == "azure":
        server.create_container(bucket)
    else:
        server.create_bucket(bucket)
    add_users(session_factory(sqlite_engine))
    base = _merge(
        plex_world.sections,
        {
            "machines": TEST_MACHINES,
            "redis": {"url": redis_url},
            "database": {"url": sqlite_url},
            "http": {"port": 0},
            "logging": {"format": "json", "level": "INFO"},
            "storage": storage_section(kind, server, bucket),
        },
    )
    runner_dir, web_dir = tmp_path / "runner-pod", tmp_path / "web-pod"
    runner_dir.mkdir()
    web_dir.mkdir()
    port = free_port()
    runner_cfg = _config(runner_dir / "repsys.yaml", base, runner_dir / "reports")
    web_cfg = _config(
        web_dir / "repsys.yaml",
        base,
        web_dir / "reports",
        web={"cookie_secure": False, "port": port, "host": "127.0.0.1"},
    )

    log = open(web_dir / "web.log", "wb")  # noqa: SIM115 - the child keeps it
    web_pod.append(
        subprocess.Popen(
            [sys.executable, "-m", "repsys", "-c", str(web_cfg), "web"],
            cwd=web_dir,
            env=_env(kind),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    log.close()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/login", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=60, what="repsys web")
    with httpx.Client(base_url=url, timeout=30) as c:
        token = csrf_of(c.get("/login").text)
        c.post("/login", data={"username": "dan", "password": PASSWORD, "csrf_token": token})
        token = csrf_of(c.get("/reports").text)
        resp = c.post(
            "/reports",
            data={"csrf_token": token, "kind": "tb", "start": "202401", "end": "202403"},
        )
        assert resp.status_code == 303, resp.text

        done = subprocess.run(
            [sys.executable, "-m", "repsys", "-c", str(runner_cfg), "runner", "--burst"],
            cwd=runner_dir,
            env=_env(kind),
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with session_factory(sqlite_engine)() as s:
            [row] = s.scalars(select(ReportRequestRow)).all()
        assert row.state == "completed", row
        # The runner recorded an object key, not a path on its own disk.
        assert row.result_path and row.result_path.startswith(f"{row.id}/TB-")
        written = (runner_dir / "reports" / row.result_path).read_bytes()
        assert not (web_dir / "reports" / row.id).exists()

        with c.stream("GET", f"/reports/{row.id}/download") as got:
            assert got.status_code == 200, got.read()
            assert got.headers["content-length"] == str(len(written))
            assert got.headers["content-disposition"].endswith('.xlsx"')
            body = b"".join(got.iter_bytes())
        assert body == written and body[:2] == b"PK"

        # The manifest (the report's metadata) sits beside it in the store.
        store = open_store(
            StorageConfig.model_validate(
                storage_section(kind, server, bucket) | _resolved_secrets(kind)
            )
        )
        keys = {s.key for s in store.list(f"{row.id}/")}
        assert f"{row.id}/manifest.json" in keys and row.result_path in keys
        assert any(k.endswith(".csv") for k in keys)

        # Another role may not stream it, and another request's key is never served.
        with httpx.Client(base_url=url, timeout=30) as olga:
            token = csrf_of(olga.get("/login").text)
            olga.post("/login", data={"username": "sam", "password": PASSWORD, "csrf_token": token})
            assert olga.get(f"/reports/{row.id}/download").status_code == 403


def _resolved_secrets(kind: str) -> dict[str, Any]:
    env = storage_env(kind)
    if kind == "azure":
        return {"account_key": SecretStr(next(iter(env.values())))}
    key_id, secret = env.values()
    return {"access_key_id": SecretStr(key_id), "secret_access_key": SecretStr(secret)}
