"""The runner's loop waits out a database outage (a PostgreSQL restart) instead of exiting.

Found by the chaos soak (decision 0400): a PostgreSQL fast restart made ``repsys runner``
exit 1, because the loop's depth gauge and reconciler read the database and only Redis
errors were waited out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from structlog.testing import capture_logs

from core.config import RepsysConfig
from core.config.infra import DatabaseConfig
from core.db import make_engine, session_factory, upgrade
from repsys.servers import PostgresServer, wait_until
from runner.requests import submit
from tests.runner.conftest import Harness
from tests.runner.test_pipeline import Recording, request_row


def test_the_runner_waits_out_a_postgresql_restart_and_runs_the_next_request(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    tmp_path: Path,
) -> None:
    pg = PostgresServer(tmp_path / "pg")
    pg.start(timeout=120)
    engine = make_engine(DatabaseConfig(url=pg.create_database("outage")))
    try:
        upgrade(engine)
        cfg = runner_config(runner={"pipelines": {"etl": {"steps": ["a"], "notify": []}}})
        log: list[tuple[str, int]] = []
        harness = make_runner(
            cfg, db=session_factory(engine), pipelines={"etl": [Recording("a", log)]}
        )
        failures: list[BaseException] = []

        def work() -> None:
            try:
                harness.runner.work()
            except BaseException as exc:
                failures.append(exc)

        pg.stop()
        with capture_logs() as logs:
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            wait_until(
                lambda: (
                    bool(failures) or any(e["event"] == "runner_database_unavailable" for e in logs)
                ),
                timeout=30,
                what="the runner meeting the outage",
            )
        assert failures == [], failures
        pg.start(timeout=120)
        row = submit(harness.sessions, harness.redis, cfg, kind="etl", params={}, requester="dan")
        wait_until(
            lambda: request_row(harness.sessions, row.id).state == "completed",
            timeout=30,
            what="the request after the outage",
        )
        harness.runner.stopper.stop()
        thread.join(10)
        assert failures == []
        assert log == [("a", 1)]
    finally:
        engine.dispose()
        pg.cleanup()
