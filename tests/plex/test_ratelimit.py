"""The shared rate limit holds across clients, and a 429's Retry-After holds everyone back.

Time is measured where it cannot flatter us: at the simulator, which records when each
request arrived. A rate limit may only make things slower, so the assertions are lower
bounds on spacing, which a loaded machine cannot break.
"""

from __future__ import annotations

import itertools
import threading

import pytest
import redis as redis_lib

from core import keys
from core.config.plex import RateLimitConfig
from core.metrics import new_registry, sample
from plex.errors import PlexRateLimitedError, PlexUnavailableError
from plex.metrics import PlexMetrics
from plex.ratelimit import RedisRateLimiter
from tests.plex.conftest import build_actions


def test_limit_holds_across_two_clients(plex_config, sim, redis_client) -> None:
    # 300 a minute = one call every 200 ms, no burst, shared by two clients in threads.
    cfg = plex_config({"rate_limit": {"per_minute": 300, "burst": 1, "max_wait_s": 10}})
    clients = [build_actions(cfg, redis_client).client for _ in range(2)]

    def work(client) -> None:
        for _ in range(5):
            client.execute_data_source(910012, {})

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    arrivals = sorted(r.at for r in sim.requests())
    assert len(arrivals) == 10
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # Granted 200 ms apart, so the ten span at least 1.8 s; each client alone would take
    # 0.8 s for its five. An arrival lags its grant by the client's own work (thread start,
    # zeep), which on a busy machine varies by a tenth of a second or more, so single gaps
    # are noise; the span only loses that lag at its two ends.
    assert arrivals[-1] - arrivals[0] >= 9 * 0.2 - 0.15, gaps
    assert redis_client.exists(keys.PLEX_RATE_LIMIT)


def test_burst_lets_calls_through_back_to_back(redis_client) -> None:
    limiter = RedisRateLimiter(redis_client, RateLimitConfig(per_minute=1, burst=3, max_wait_s=1))
    for _ in range(3):
        limiter.acquire()
    with pytest.raises(PlexRateLimitedError) as caught:
        limiter.acquire()  # the 4th would wait about a minute: more than max_wait_s
    assert caught.value.reason == "rate_limit_wait"
    assert caught.value.retry_after_s > 50


def test_429_retry_after_holds_back_every_client(plex_config, make_sim, redis_client) -> None:
    cfg = plex_config()
    sim_ = make_sim(faults={"retry_after_s": 1})
    cfg = plex_config({"endpoint": sim_.url})
    registry = new_registry()
    first = build_actions(cfg, redis_client, PlexMetrics(registry)).client
    second = build_actions(cfg, redis_client).client
    sim_.faults.configure({"queue": ["http_429"]})
    with pytest.raises(PlexRateLimitedError) as caught:
        first.execute_data_source(910012, {})
    assert caught.value.retry_after_s == 1.0
    second.execute_data_source(910012, {})  # another client, same shared back-off
    records = sim_.requests()
    assert [r.status for r in records] == [429, 200]
    assert records[1].at - records[0].at >= 0.95
    first.execute_data_source(910012, {})
    assert (
        sample(
            registry,
            "repsys_plex_requests_total",
            {"data_source": "910012", "outcome": "transient", "reason": "rate_limited"},
        )
        == 1
    )


def test_back_off_never_shortens_a_longer_wait(redis_client) -> None:
    limiter = RedisRateLimiter(redis_client, RateLimitConfig())
    limiter.back_off(30)
    limiter.back_off(1)
    assert redis_client.pttl(keys.PLEX_BACKOFF_UNTIL) > 29_000


def test_redis_away_means_no_unmetered_call() -> None:
    client = redis_lib.Redis(port=1, socket_connect_timeout=0.2)
    metrics = PlexMetrics(new_registry())
    limiter = RedisRateLimiter(client, RateLimitConfig(), metrics=metrics)
    with pytest.raises(PlexUnavailableError) as caught:
        limiter.acquire()
    assert caught.value.reason == "ratelimit_unavailable"
