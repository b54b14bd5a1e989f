"""Plex sender: tickets filed per second, beside raw zeep calls to the same simulator.

The baseline is the least filing a ticket can cost: one bare zeep ``ExecuteDataSource``
call of the create data source, no outbox, no rate limit, no bookkeeping. The sender does
that call plus the claim, the shared Redis rate limit and the outbox update with its
history row on SQLite. The ratio says what exactly-once bookkeeping costs per ticket;
in a plant Plex's 200 calls a minute, not this, is the limit.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import requests
import zeep
from pydantic import SecretStr

from core.config import parse_config
from core.config.sim_plex import SimPlexConfig
from core.db import make_engine, session_factory, upgrade
from core.metrics import new_registry
from core.outbox import add_ticket
from core.redis import connect_sync
from plex.actions import PlexActions
from plex.client import WSDL_PATH, PlexClient
from plex.metrics import PlexMetrics
from plex.ratelimit import RedisRateLimiter
from plex.sender import Sender
from repsys.servers import RedisServer
from sim.plex.server import PlexSimServer

N = 400
NS = "http://www.plexus-online.com/DataSource"


def raw_zeep(url: str, n: int) -> float:
    session = requests.Session()
    session.auth = ("RepsysWs@plex.com", "bench")
    client = zeep.Client(str(WSDL_PATH), transport=zeep.Transport(session=session))
    service = client.create_service(f"{{{NS}}}ServiceSoap", url)
    param = client.get_type(f"{{{NS}}}InputParameter")
    started = time.perf_counter()
    for i in range(n):
        inputs = [
            param(Value="61101", Name="@Workcenter_Key", Required=False, Output=False),
            param(Value="worn tool", Name="@Description", Required=False, Output=False),
            param(Value=f"RS-RAW{i:05d}", Name="@External_Ref", Required=False, Output=False),
        ]
        service.ExecuteDataSource(
            ExecuteDataSourceRequest={
                "DataSourceKey": "910001",
                "InputParameters": {"InputParameter": inputs},
            }
        )
    return n / (time.perf_counter() - started)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp) / "redis")
        redis_server.start()
        sim = PlexSimServer(
            SimPlexConfig(username="RepsysWs@plex.com", password=SecretStr("bench"))
        ).start()
        try:
            cfg = parse_config(
                {
                    "machines": [
                        {
                            "id": "cnc101",
                            "pcn": 123681,
                            "workcenter_key": 61101,
                            "workcenter_code": "cnc101",
                        }
                    ],
                    "redis": {"url": redis_server.url},
                    "database": {"url": f"sqlite:///{tmp}/bench.db"},
                    "plex": {
                        "endpoint": sim.url,
                        "username": "RepsysWs@plex.com",
                        "rate_limit": {"per_minute": 1_000_000, "burst": 1000},
                        "sender": {"batch_size": 50},
                    },
                }
            )
            cfg = cfg.model_copy(
                update={"plex": cfg.plex.model_copy(update={"password": SecretStr("bench")})}
            )
            engine = make_engine(cfg.database)
            upgrade(engine)
            sessions = session_factory(engine)
            with sessions() as session, session.begin():
                for i in range(N):
                    add_ticket(
                        session,
                        machine=cfg.machines[0],
                        source="rule",
                        title=f"bench {i}",
                        description="worn tool",
                        external_ref=f"RS-BENCH{i:05d}",
                    )
            metrics = PlexMetrics(new_registry())
            limiter = RedisRateLimiter(
                connect_sync(cfg.redis), cfg.plex.rate_limit, metrics=metrics
            )
            actions = PlexActions(
                PlexClient(cfg.plex, metrics=metrics, limiter=limiter), cfg.plex.actions
            )
            sender = Sender(cfg, sessions, actions, metrics=metrics, name="bench")

            base = raw_zeep(sim.url, N)
            started = time.perf_counter()
            done = sender.drain()
            ours = done / (time.perf_counter() - started)
            assert done == N, done
            assert len(sim.tickets()) == 2 * N
            engine.dispose()
        finally:
            sim.stop()
            redis_server.stop()
    print(f"raw zeep ExecuteDataSource calls   {base:8.0f} /s  (baseline)")
    print(f"tickets filed by the sender         {ours:8.0f} /s  ratio {ours / base:.2f}")
    print(f"(Plex's own limit: 200 calls a minute = {200 / 60:.1f} /s)")


if __name__ == "__main__":
    main()
