"""The Redis factory builds working clients from configuration."""

from __future__ import annotations

import asyncio

import pytest
import redis

from core.config import parse_config
from core.redis import connect, connect_sync


def test_standalone_sync_and_async_clients_work(redis_url: str) -> None:
    cfg = parse_config({"redis": {"url": redis_url}}).redis
    client = connect_sync(cfg)
    client.set("repsys:t", "1")
    assert client.get("repsys:t") == "1"  # decoded to str
    client.close()

    async def use() -> str | None:
        aclient = connect(cfg)
        try:
            value: str | None = await aclient.get("repsys:t")
            return value
        finally:
            await aclient.aclose()

    assert asyncio.run(use()) == "1"


def test_password_from_env_reaches_the_server(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client.config_set("requirepass", "pw-from-env")
    try:
        monkeypatch.setenv("REPSYS_TEST_REDIS_PW", "pw-from-env")
        cfg = parse_config(
            {"redis": {"url": redis_url, "password": {"env": "REPSYS_TEST_REDIS_PW"}}}
        ).redis
        client = connect_sync(cfg)
        assert client.ping() is True
        client.close()
        # Without the password the same server refuses.
        bare = connect_sync(parse_config({"redis": {"url": redis_url}}).redis)
        with pytest.raises(redis.AuthenticationError):
            bare.ping()
        bare.close()
    finally:
        # Leave the session's server open for the next test, whatever happened above.
        admin = redis.Redis.from_url(redis_url, password="pw-from-env")
        admin.config_set("requirepass", "")
        admin.close()
