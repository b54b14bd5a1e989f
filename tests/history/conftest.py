"""Fixtures of the history tests: the storage servers of tests/storage."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from core.config.storage import StorageConfig
from tests.storage.conftest import azurite_server, s3_server  # noqa: F401 - fixtures
from tests.storage.servers import MOTO_KEY_ID, MOTO_SECRET, MotoS3


@pytest.fixture
def s3_store(s3_server: MotoS3) -> StorageConfig:  # noqa: F811 - the fixture imported above
    bucket = f"h{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    return StorageConfig(
        type="s3",
        bucket=bucket,
        endpoint=s3_server.endpoint,
        access_key_id=SecretStr(MOTO_KEY_ID),
        secret_access_key=SecretStr(MOTO_SECRET),
        allow_http=True,
    )
