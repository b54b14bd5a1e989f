"""What every request handler of the web app needs, built once per app.

The app factory (``web/app.py``) builds one :class:`Services` from the configuration and
the connections handed to it, and stores it on ``app.state``; handlers reach it through
:func:`services`. Tests build the app with their own engine, Redis and registry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from core.config import RepsysConfig
from core.db.schema import utcnow
from core.lifecycle import Stopper
from core.redis import RedisCommands
from core.sources import SeriesArchive
from core.toollife import ToolLifeHistory
from web.metrics import WebMetrics
from web.ratelimit import LoginLimiter, ReportQuota

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Services:
    """Configuration, connections and helpers shared by every handler of one app.

    Attributes:
        cfg: the whole validated configuration.
        sessions: SQLAlchemy session factory on the system-of-record database.
        redis: a blocking Redis client (handlers run in the thread pool).
        async_redis: builds an asyncio Redis client for the live queue (one per stream).
        registry: the metrics registry /metrics serves.
        stopper: set when the process stops, so open live streams end promptly.
        clock: the current time (UTC); tests may pin it.
        tool_life: the tool-life history report (None: no signal history wired in).
        history_series: chart samples from the signal history (None: not wired in).
    """

    cfg: RepsysConfig
    sessions: sessionmaker[Session]
    redis: RedisCommands
    async_redis: Callable[[], Any]
    registry: CollectorRegistry
    metrics: WebMetrics
    limiter: LoginLimiter
    stopper: Stopper
    quota: ReportQuota
    clock: Callable[[], datetime] = utcnow
    tool_life: ToolLifeHistory | None = None
    history_series: SeriesArchive | None = None
    proxy_networks: list[Network] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proxy_networks = [
            ipaddress.ip_network(p, strict=False) for p in self.cfg.web.trusted_proxy.proxies
        ]

    def is_trusted_proxy(self, address: str | None) -> bool:
        """True when ``address`` is one of the configured authenticating gateways."""
        if not self.cfg.web.trusted_proxy.enabled or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.proxy_networks)


def services(conn: HTTPConnection) -> Services:
    """The app's :class:`Services` from a request."""
    svc: Services = conn.app.state.services
    return svc
