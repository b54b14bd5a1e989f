"""The store interface against a folder, Azurite and moto's S3 server: same behaviour."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from core.config.storage import StorageConfig
from core.storage import StorageError, open_store, safe_key


def test_put_open_list_delete_streamed(any_store: StorageConfig, tmp_path: Path) -> None:
    store = open_store(any_store)
    # Larger than one multipart part (5 MiB) so S3 and Azure take the multipart path.
    data = os.urandom(6 * 1024 * 1024 + 123)
    src = tmp_path / "report.xlsx"
    src.write_bytes(data)
    store.put_file("r1/report.xlsx", src)
    store.put_bytes("r1/manifest.json", b"{}")

    opened = store.open("r1/report.xlsx")
    assert opened.size == len(data)
    digest, pieces = hashlib.sha256(), 0
    for chunk in opened.chunks:
        # Streamed in pieces, never the whole object at once.
        assert len(chunk) < len(data)
        digest.update(chunk)
        pieces += 1
    assert pieces > 1 and digest.digest() == hashlib.sha256(data).digest()
    assert {(s.key, s.size) for s in store.list("r1/")} == {
        ("r1/report.xlsx", len(data)),
        ("r1/manifest.json", 2),
    }

    store.delete("r1/report.xlsx")
    store.delete("r1/report.xlsx")  # idempotent
    with pytest.raises(StorageError) as missing:
        store.open("r1/report.xlsx")
    assert missing.value.reason == "not_found"


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a"])
def test_keys_that_climb_or_are_not_plain_are_refused(key: str) -> None:
    with pytest.raises(StorageError) as err:
        safe_key(key)
    assert err.value.reason == "bad_key"


def test_config_needs_bucket_and_both_keys() -> None:
    with pytest.raises(ValueError, match=r"needs storage\.bucket"):
        StorageConfig(type="s3")
    with pytest.raises(ValueError, match=r"needs storage\.account_name"):
        StorageConfig(type="azure", bucket="b")
    with pytest.raises(ValueError, match="a secret must be"):
        StorageConfig.model_validate({"type": "s3", "bucket": "b", "access_key_id": "AKIA"})
