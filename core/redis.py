"""Redis connections from configuration: a plain server, a Sentinel group, or a Cluster.

Processes call :func:`connect` (asyncio) or :func:`connect_sync` and never build clients
themselves, so a plant moving from one Redis to a Sentinel group changes config, not code.
Responses are decoded to ``str``: every value RepSys stores in Redis is text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel
from redis.typing import (
    ChannelT,
    ConsumerT,
    EncodableT,
    ExpiryT,
    FieldT,
    GroupT,
    KeysT,
    KeyT,
    Number,
    ScriptTextT,
    StreamIdT,
    ZScoreBoundT,
)

from core.config.infra import RedisConfig

AsyncRedis = aioredis.Redis
SyncRedis = redis.Redis


class RedisCommands(Protocol):
    """The blocking commands RepSys's rules call, as ``redis.Redis`` and ``RedisCluster``
    both have them (:func:`_conforms` has mypy check it).

    Typed rather than ``Any`` so a misspelt command or keyword fails the type check.
    Parameters use redis-py's own aliases (its ``dict`` parameters are invariant);
    replies are ``Any``, because redis-py types them ``X | Awaitable[X]`` for its sync
    and asyncio clients at once, which no caller can use without a cast. Add a command
    here when a new caller needs it.
    """

    def register_script(self, script: ScriptTextT) -> Any: ...

    def pipeline(self, transaction: bool = ..., shard_hint: Any = ...) -> Any: ...

    def ping(self, **kwargs: Any) -> Any: ...

    def close(self) -> None: ...

    def pubsub(self, **kwargs: Any) -> Any: ...

    def publish(self, channel: ChannelT, message: EncodableT, **kwargs: Any) -> Any: ...

    def get(self, name: KeyT) -> Any: ...

    def set(
        self,
        name: KeyT,
        value: EncodableT,
        ex: ExpiryT | None = ...,
        px: ExpiryT | None = ...,
        nx: bool = ...,
    ) -> Any: ...

    def delete(self, *names: KeyT) -> Any: ...

    def zrem(self, name: KeyT, *values: FieldT) -> Any: ...

    def zrange(
        self,
        name: KeyT,
        start: EncodableT,
        end: EncodableT,
        desc: bool = ...,
        withscores: bool = ...,
    ) -> Any: ...

    def zrangebyscore(  # noqa: PLR0917 - ZRANGEBYSCORE's own arguments
        self,
        name: KeyT,
        min: ZScoreBoundT,
        max: ZScoreBoundT,
        start: int | None = ...,
        num: int | None = ...,
        withscores: bool = ...,
    ) -> Any: ...

    def blpop(self, keys: KeysT, timeout: Number | None = ...) -> Any: ...

    def hgetall(self, name: KeyT) -> Any: ...

    def hset(
        self,
        name: KeyT,
        key: FieldT | None = ...,
        value: EncodableT | None = ...,
        mapping: Mapping[FieldT, EncodableT] | None = ...,
    ) -> Any: ...

    def hmget(self, name: KeyT, keys: FieldT | Iterable[FieldT], *args: FieldT) -> Any: ...

    def xadd(
        self,
        name: KeyT,
        fields: dict[FieldT, EncodableT],
        id: StreamIdT = ...,
        maxlen: int | None = ...,
        approximate: bool = ...,
    ) -> Any: ...

    def xread(
        self, streams: dict[KeyT, StreamIdT], count: int | None = ..., block: int | None = ...
    ) -> Any: ...

    def xlen(self, name: KeyT) -> Any: ...

    def xrange(
        self, name: KeyT, min: StreamIdT = ..., max: StreamIdT = ..., count: int | None = ...
    ) -> Any: ...

    def xrevrange(
        self, name: KeyT, max: StreamIdT = ..., min: StreamIdT = ..., count: int | None = ...
    ) -> Any: ...

    def xreadgroup(  # noqa: PLR0917 - XREADGROUP's own arguments
        self,
        groupname: str,
        consumername: str,
        streams: dict[KeyT, StreamIdT],
        count: int | None = ...,
        block: int | None = ...,
        noack: bool = ...,
    ) -> Any: ...

    def xack(self, name: KeyT, groupname: GroupT, *ids: StreamIdT) -> Any: ...

    def xgroup_create(
        self, name: KeyT, groupname: GroupT, id: StreamIdT = ..., mkstream: bool = ...
    ) -> Any: ...

    def xautoclaim(  # noqa: PLR0917 - XAUTOCLAIM's own arguments
        self,
        name: KeyT,
        groupname: GroupT,
        consumername: ConsumerT,
        min_idle_time: int,
        start_id: StreamIdT = ...,
        count: int | None = ...,
    ) -> Any: ...

    def xclaim(  # noqa: PLR0917 - XCLAIM's own arguments
        self,
        name: KeyT,
        groupname: GroupT,
        consumername: ConsumerT,
        min_idle_time: int,
        message_ids: list[StreamIdT] | tuple[StreamIdT],
        idle: int | None = ...,
        time: int | None = ...,
        retrycount: int | None = ...,
        force: bool = ...,
        justid: bool = ...,
    ) -> Any: ...

    def xinfo_groups(self, name: KeyT) -> Any: ...


class PooledRedis(RedisCommands, Protocol):
    """A client with a connection pool of its own (a plain server or a Sentinel master;
    a Cluster has one per node): what reads on a connection of their own need."""

    connection_pool: Any


def _conforms(plain: redis.Redis, cluster: RedisCluster) -> tuple[PooledRedis, RedisCommands]:
    """Never called: mypy checks here that both clients meet the protocols."""
    return plain, cluster


def reset_connections(client: Any) -> None:
    """Close every connection of a blocking client's pool(s); each reconnects on its next use.

    After a failover or a restart every pooled connection leads to the server that went
    away, and fails once when next used. A loop that starts over on a Redis error (the
    rules worker) closes them all at once, so the next error it meets is a real one.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pool.disconnect()
    elif isinstance(client, RedisCluster):
        client.disconnect_connection_pools()  # type: ignore[no-untyped-call]  # unannotated


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
