"""Redis connections from configuration: a plain server, a Sentinel group, or a Cluster.

Processes call :func:`connect` (asyncio) or :func:`connect_sync` and never build clients
themselves, so a plant moving from one Redis to a Sentinel group changes config, not code.
Responses are decoded to ``str``: every value RepSys stores in Redis is text.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from core.config.infra import RedisConfig

AsyncRedis = aioredis.Redis
SyncRedis = redis.Redis


def _sentinel_hosts(cfg: RedisConfig) -> list[tuple[str, int]]:
    assert cfg.sentinel is not None
    hosts = []
    for item in cfg.sentinel.sentinels:
        host, _, port = item.rpartition(":")
        hosts.append((host or "127.0.0.1", int(port or 26379)))
    return hosts


def _common(cfg: RedisConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": cfg.socket_timeout_s,
        "socket_connect_timeout": cfg.socket_timeout_s,
    }
    if cfg.password is not None:
        kwargs["password"] = cfg.password.get_secret_value()
    return kwargs


def connect(cfg: RedisConfig) -> Any:
    """An asyncio client (``redis.asyncio.Redis`` or ``RedisCluster``) for ``cfg``."""
    kwargs = _common(cfg)
    if cfg.mode == "cluster":
        return AsyncRedisCluster.from_url(cfg.url, **kwargs)
    if cfg.mode == "sentinel":
        assert cfg.sentinel is not None
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": cfg.socket_timeout_s}
        if cfg.sentinel.password is not None:
            sentinel_kwargs["password"] = cfg.sentinel.password.get_secret_value()
        sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            _sentinel_hosts(cfg), sentinel_kwargs=sentinel_kwargs, **kwargs
        )
        return sentinel.master_for(cfg.sentinel.master_name, **kwargs)
    return aioredis.Redis.from_url(
        cfg.url, health_check_interval=cfg.health_check_interval_s, **kwargs
    )


def connect_sync(cfg: RedisConfig) -> Any:
    """A blocking client (``redis.Redis`` or ``RedisCluster``) for ``cfg``."""
    kwargs = _common(cfg)
    if cfg.mode == "cluster":
        return RedisCluster.from_url(cfg.url, **kwargs)
    if cfg.mode == "sentinel":
        assert cfg.sentinel is not None
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": cfg.socket_timeout_s}
        if cfg.sentinel.password is not None:
            sentinel_kwargs["password"] = cfg.sentinel.password.get_secret_value()
        # redis-py leaves the sync Sentinel API unannotated.
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            _sentinel_hosts(cfg), sentinel_kwargs=sentinel_kwargs, **kwargs
        )
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            cfg.sentinel.master_name, **kwargs
        )
    return redis.Redis.from_url(
        cfg.url, health_check_interval=cfg.health_check_interval_s, **kwargs
    )
