"""Object-store servers for tests: Azurite (Azure Blob) and moto's S3 server.

Both are started on a free loopback port with their own data, like redis-server in
``tests/conftest.py``. Azurite comes from the npm registry into ``.tools/azurite`` (the
set-up, ``tools/setup-node.sh``, installs it); moto's server from PyPI (a dev extra).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
MOTO_KEY_ID, MOTO_SECRET = "testing", "testing-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class Azurite:
    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1

    def create_container(self, name: str) -> None:
        """PUT a container, signed with the account key (Shared Key, as the SDKs do)."""
        url = f"{self.endpoint}/{name}?restype=container"
        date = formatdate(usegmt=True)
        headers = {"x-ms-date": date, "x-ms-version": "2021-08-06"}
        canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        resource = f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
        to_sign = "PUT\n" + "\n" * 11 + canon_headers + resource
        digest = hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(), hashlib.sha256)
        headers["Authorization"] = (
            f"SharedKey {AZURITE_ACCOUNT}:{base64.b64encode(digest.digest()).decode()}"
        )
        req = urllib.request.Request(url, method="PUT", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201, resp.status


@contextmanager
def azurite(workdir: Path) -> Iterator[Azurite]:
    if not AZURITE.exists():
        raise FileNotFoundError(f"{AZURITE} is missing: run `make setup`")
    port = free_port()
    data = workdir / "azurite"
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--location", str(data), "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_port(port, proc)
        yield Azurite(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    finally:
        _stop(proc)


@dataclass(frozen=True)
class MotoS3:
    endpoint: str

    def create_bucket(self, name: str) -> None:
        """PUT a bucket (moto's server does not check signatures unless told to)."""
        req = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200, resp.status


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": MOTO_KEY_ID, "AWS_SECRET_ACCESS_KEY": MOTO_SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        _wait_port(port, proc)
        yield MotoS3(f"http://127.0.0.1:{port}")
    finally:
        _stop(proc)
