"""Fixtures of the storage tests: Azurite and moto's S3 server, each with a fresh bucket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.config.storage import StorageConfig
from tests.storage.servers import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    MOTO_KEY_ID,
    MOTO_SECRET,
    Azurite,
    MotoS3,
    azurite,
    moto_s3,
)

#: The environment variables the YAML's secret references name.
KEY_ENV, SECRET_ENV = "REPSYS_TEST_STORAGE_KEY", "REPSYS_TEST_STORAGE_SECRET"


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


def storage_section(kind: str, server: Azurite | MotoS3, bucket: str) -> dict[str, Any]:
    """The ``storage:`` YAML section for ``server``, secrets as env references."""
    if kind == "azure":
        return {
            "type": "azure",
            "bucket": bucket,
            "account_name": AZURITE_ACCOUNT,
            "account_key": {"env": KEY_ENV},
            "endpoint": server.endpoint,
            "allow_http": True,
        }
    return {
        "type": "s3",
        "bucket": bucket,
        "endpoint": server.endpoint,
        "access_key_id": {"env": KEY_ENV},
        "secret_access_key": {"env": SECRET_ENV},
        "allow_http": True,
    }


def storage_env(kind: str) -> dict[str, str]:
    """The secrets ``storage_section`` refers to."""
    if kind == "azure":
        return {KEY_ENV: AZURITE_KEY}
    return {KEY_ENV: MOTO_KEY_ID, SECRET_ENV: MOTO_SECRET}


@pytest.fixture(params=["local", "azure", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> StorageConfig:
    """A ``StorageConfig`` on a fresh bucket of each kind (local, Azurite, S3)."""
    kind = request.param
    if kind == "local":
        return StorageConfig(type="local", root=str(tmp_path / "store"))
    bucket = f"b{uuid.uuid4().hex[:12]}"
    if kind == "azure":
        server: Azurite = request.getfixturevalue("azurite_server")
        server.create_container(bucket)
        return StorageConfig(
            type="azure",
            bucket=bucket,
            account_name=AZURITE_ACCOUNT,
            account_key=SecretStr(AZURITE_KEY),
            endpoint=server.endpoint,
            allow_http=True,
            chunk_bytes=64 * 1024,
        )
    s3: MotoS3 = request.getfixturevalue("s3_server")
    s3.create_bucket(bucket)
    return StorageConfig(
        type="s3",
        bucket=bucket,
        endpoint=s3.endpoint,
        access_key_id=SecretStr(MOTO_KEY_ID),
        secret_access_key=SecretStr(MOTO_SECRET),
        allow_http=True,
        chunk_bytes=64 * 1024,
    )
