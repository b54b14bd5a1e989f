"""The trial balance's 4814 calls take the plant-wide Plex rate limit, as the sender's do.

Plex counts every call of the plant's account, whichever process makes it; a runner that
called 4814 unmetered could spend the sender's share. The client ``build_tb_sources`` gives
the TB is limited by the same Redis bucket: with one call a minute and no burst, the
second call within the minute is refused by the limiter (not by Plex), and the bucket
lives under the key the sender's limiter uses.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from core import keys
from core.config import RepsysConfig
from plex.errors import PlexRateLimitedError
from runner.services import build_tb_sources
from tests.runner.conftest import Accounting


def test_4814_calls_share_the_plex_rate_limit(
    runner_config: Callable[..., RepsysConfig], seeded: Accounting, redis_client: redis.Redis
) -> None:
    cfg = runner_config(
        seeded, plex={"rate_limit": {"per_minute": 1, "burst": 1, "max_wait_s": 0.2}}
    )
    data_source = build_tb_sources(cfg, redis_client).data_source
    assert data_source is not None
    client = data_source()
    params = {"@PCNs": "123681", "@Period_Start": "202412", "@Period_End": "202412"}
    try:
        client.execute_data_source(4814, params)
        assert redis_client.exists(keys.PLEX_RATE_LIMIT)
        with pytest.raises(PlexRateLimitedError) as refused:
            client.execute_data_source(4814, params)
    finally:
        client.close()
    assert refused.value.reason == "rate_limit_wait"
    assert len(seeded.sim.requests()) == 1  # the refused call never reached Plex
