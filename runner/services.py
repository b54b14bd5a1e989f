"""Building the runner's outside connections from configuration (the production wiring).

Tests build :class:`runner.steps.Services` themselves; processes call
:func:`build_services`.
"""

from __future__ import annotations

from typing import Any

from core.config import RepsysConfig
from plex.client import PlexClient
from plex.ratelimit import RedisRateLimiter
from runner.notify import Mailer, TeamsWebhook
from runner.steps import Services
from runner.tb.source import AccountingSource, DataSourceClient, OdbcAccountingSource


def build_services(cfg: RepsysConfig, redis_client: Any) -> Services:
    """ODBC, Plex, SMTP and Teams as configured; what is not configured stays ``None``.

    Data source 4814 goes through the Plex client of the ``plex`` section, metered by
    the same Redis rate limit as the ticket sender (``plex.rate_limit``): Plex counts
    every call of the plant's account, whichever process makes it.
    """
    odbc = cfg.runner.tb.odbc
    accounting = None
    if odbc.connection_string:

        def accounting() -> AccountingSource:
            password = odbc.password.get_secret_value() if odbc.password else None
            return OdbcAccountingSource(
                odbc.connection_string, password=password, timeout_s=odbc.timeout_s
            )

    def data_source() -> DataSourceClient:
        return PlexClient(cfg.plex, limiter=RedisRateLimiter(redis_client, cfg.plex.rate_limit))

    smtp, teams = cfg.runner.smtp, cfg.runner.teams
    return Services(
        accounting=accounting,
        data_source=data_source,
        mailer=Mailer(smtp) if smtp is not None else None,
        teams=TeamsWebhook(teams) if teams is not None and teams.webhook_url else None,
        redis=redis_client,
    )
