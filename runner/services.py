"""Building the runner's outside connections from configuration (the production wiring).

Tests build :class:`runner.steps.Services` and :class:`runner.tb.source.TbSources`
themselves; processes call :func:`build_services` and :func:`build_tb_sources`.
"""

from __future__ import annotations

from core.config import RepsysConfig
from core.redis import RedisCommands
from plex.client import PlexClient
from plex.ratelimit import RedisRateLimiter
from runner.notify import Mailer, TeamsWebhook
from runner.steps import Services
from runner.tb.source import AccountingSource, DataSourceClient, OdbcAccountingSource, TbSources


def build_services(cfg: RepsysConfig, redis_client: RedisCommands) -> Services:
    """SMTP and Teams as configured (what is not stays ``None``), Redis, the clock."""
    smtp, teams = cfg.runner.smtp, cfg.runner.teams
    return Services(
        mailer=Mailer(smtp) if smtp is not None else None,
        teams=TeamsWebhook(teams) if teams is not None and teams.webhook_url else None,
        redis=redis_client,
    )


def build_tb_sources(cfg: RepsysConfig, redis_client: RedisCommands) -> TbSources:
    """The trial balance's ODBC source (when configured) and Plex client.

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

    return TbSources(accounting=accounting, data_source=data_source)
