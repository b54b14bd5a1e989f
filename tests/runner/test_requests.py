"""Requests: refused with a clear message, coalesced, cancelled, listed like a print queue,
announced on the progress channel, and never half-queued."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.config.infra import DatabaseConfig
from core.db import make_engine, session_factory, upgrade
from core.db.schema import ReportRequestRow, ReportRun
from core.db.warehouse import TBPeriod
from core.metrics import sample
from repsys.servers import RedisServer
from runner.errors import BadRequest, QueueUnavailable
from runner.params import Normalized
from runner.requests import Progress, cancel, list_queue, submit
from tests.runner.conftest import Harness


@pytest.fixture
def cfg(runner_config: Callable[..., RepsysConfig]) -> RepsysConfig:
    return runner_config()


def count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(ReportRequestRow)) or 0)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        (
            "tb",
            {"start": 202414, "end": 202414},
            "start period 202414 is not a period: PP must be 01 to 13",
        ),
        (
            "tb",
            {"start": "2024-01", "end": 202401},
            "start period '2024-01' is not a period like 202401 (YYYYPP)",
        ),
        (
            "tb",
            {"start": 202413, "end": 202413},
            "period 202413 is not in the fiscal calendar of PCN 123681: period 13 is accepted "
            "only once the calendar is loaded (after a first trial balance)",
        ),
        ("tb", {"start": 202405, "end": 202401}, "start period 202405 is after end period 202401"),
        (
            "tb",
            {"start": 202401, "end": 202401, "pcns": "123681,999999"},
            "unknown PCN 999999 (known: 123681, 300758)",
        ),
        (
            "tb",
            {"start": 202401},
            "give both a start and an end period, or neither (the latest window)",
        ),
        (
            "tb",
            {"periods": 3},
            "unknown parameter 'periods' for a tb report (allowed: end, pcns, start)",
        ),
        (
            "balance_sheet",
            {},
            "unknown report kind 'balance_sheet' (known: escalation, tb, tool_check)",
        ),
        ("escalation", {"shift": "night"}, "unknown shift 'night' (known: first, second, third)"),
        (
            "tool_check",
            {"window_minutes": 0},
            "window_minutes 0 must be a whole number from 1 to 1440",
        ),
        # Digits of other scripts pass str.isdigit() but are not what anyone typed.
        (
            "tool_check",
            {"window_minutes": "\u00b2"},
            "window_minutes '\u00b2' must be a whole number from 1 to 1440",
        ),
        (
            "tb",
            {"start": "\u00b2" * 6, "end": 202401},
            "start period '\u00b2\u00b2\u00b2\u00b2\u00b2\u00b2' is not a period like 202401 "
            "(YYYYPP)",
        ),
        (
            "tb",
            {"start": "\u0662\u0660\u0662\u0664\u0660\u0661", "end": 202401},
            "start period '\u0662\u0660\u0662\u0664\u0660\u0661' is not a period like "
            "202401 (YYYYPP)",
        ),
        ("tb", {"pcns": "\u00b9"}, "PCN '\u00b9' is not a number"),
        # What no queue entry or table can carry is refused before anything is stored.
        (
            "tb",
            {"pcns": "1\ud800"},
            "parameter 'pcns': '1\\ud800' holds a control or invalid character, is not a "
            "finite number or has more than 256 characters",
        ),
        (
            "tool_check",
            {"window_minutes": float("nan")},
            "parameter 'window_minutes': 'nan' holds a control or invalid character, is not "
            "a finite number or has more than 256 characters",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message_and_nothing_is_queued(
    cfg: RepsysConfig,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
    kind: str,
    params: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(BadRequest) as err:
        submit(sessions, redis_client, cfg, kind=kind, params=params, requester="dan")
    assert str(err.value) == message
    assert count(sessions) == 0
    assert redis_client.xlen(keys.REPORT_QUEUE) == 0


def test_period_13_is_checked_against_the_loaded_fiscal_calendar(
    cfg: RepsysConfig, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    with sessions.begin() as s:
        for period in [*range(202301, 202314), *range(202401, 202413)]:
            s.add(
                TBPeriod(
                    pcn=123681,
                    period=period,
                    ordinal=1,
                    period_key=period,
                    fiscal_order=period % 100,
                    period_display=str(period),
                    begin_date=date(2024, 1, 1),
                    end_date=date(2024, 1, 31),
                    closed=True,
                    update_date="",
                    fence=1,
                )
            )
    with pytest.raises(BadRequest) as err:
        submit(
            sessions,
            redis_client,
            cfg,
            kind="tb",
            params={"start": 202401, "end": 202413, "pcns": [123681]},
            requester="dan",
        )
    assert str(err.value) == (
        "period 202413 is not in the fiscal calendar of PCN 123681 (fiscal 2024 has periods "
        "01 to 12)"
    )
    row = submit(
        sessions,
        redis_client,
        cfg,
        kind="tb",
        params={"start": 202313, "end": 202401, "pcns": [123681]},
        requester="dan",
    )
    assert row.name == "TB_202313_to_202401"


def test_identical_pending_requests_are_coalesced(
    cfg: RepsysConfig, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    first = submit(
        sessions,
        redis_client,
        cfg,
        kind="tb",
        params={"start": "202401", "end": 202403, "pcns": "300758,123681"},
        requester="dan",
    )
    again = submit(
        sessions,
        redis_client,
        cfg,
        kind="tb",
        params={"start": 202401, "end": "202403", "pcns": [123681, 300758]},
        requester="eve",
    )
    other = submit(
        sessions,
        redis_client,
        cfg,
        kind="tb",
        params={"start": 202401, "end": 202404},
        requester="dan",
    )
    assert again.id == first.id
    assert other.id != first.id
    assert first.params == {"pcns": [123681, 300758], "start": 202401, "end": 202403}
    assert count(sessions) == 2
    assert redis_client.xlen(keys.REPORT_QUEUE) == 2
    # Once the first is no longer pending, the same request is a new one.
    assert cancel(sessions, redis_client, first.id, by="dan")
    third = submit(
        sessions,
        redis_client,
        cfg,
        kind="tb",
        params={"start": 202401, "end": 202403},
        requester="dan",
    )
    assert third.id != first.id


def test_cancel_only_a_pending_request_and_the_runner_skips_it(
    cfg: RepsysConfig,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
    make_runner: Callable[..., Harness],
) -> None:
    row = submit(sessions, redis_client, cfg, kind="tool_check", params={}, requester="dan")
    assert cancel(sessions, redis_client, row.id, by="dan") is True
    assert cancel(sessions, redis_client, row.id, by="dan") is False
    harness = make_runner(cfg)
    assert harness.burst() == 1
    with sessions() as s:
        done = s.get(ReportRequestRow, row.id)
        assert done is not None
        assert (done.state, done.error) == ("cancelled", "cancelled by dan")
        assert s.scalar(select(func.count()).select_from(ReportRun)) == 0
    assert redis_client.xlen(keys.REPORT_QUEUE) == 0


def test_list_queue_is_a_print_queue(
    cfg: RepsysConfig, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    a = submit(
        sessions, redis_client, cfg, kind="tool_check", params={"window_minutes": 1}, requester="a"
    )
    b = submit(
        sessions, redis_client, cfg, kind="tool_check", params={"window_minutes": 2}, requester="b"
    )
    c = submit(
        sessions, redis_client, cfg, kind="tool_check", params={"window_minutes": 3}, requester="c"
    )
    d = submit(
        sessions, redis_client, cfg, kind="tool_check", params={"window_minutes": 4}, requester="d"
    )
    cancel(sessions, redis_client, a.id, by="a")
    with sessions.begin() as s:
        row = s.get(ReportRequestRow, c.id)
        assert row is not None
        row.state = "running"
    assert [r.id for r in list_queue(sessions)] == [c.id, b.id, d.id, a.id]
    assert [r.id for r in list_queue(sessions, limit=2)] == [c.id, b.id]


def test_progress_is_published_as_versioned_json(
    cfg: RepsysConfig, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.REPORT_PROGRESS)
    pubsub.get_message(timeout=1.0)  # the subscription confirmation
    row = submit(sessions, redis_client, cfg, kind="tool_check", params={}, requester="dan")
    message = pubsub.get_message(timeout=5.0)
    pubsub.close()
    assert message is not None
    data = json.loads(message["data"])
    assert set(data) == {"v", "id", "state", "step", "at"}
    assert (data["v"], data["id"], data["state"], data["step"]) == (1, row.id, "pending", None)
    progress = Progress.from_json(message["data"])
    assert progress is not None and progress.at.tzinfo is not None
    assert Progress.from_json('{"v": 2, "id": "x"}') is None


def test_a_request_is_not_left_behind_when_redis_refuses_it(
    runner_config: Callable[..., RepsysConfig], tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    cfg = runner_config(redis={"url": server.url})
    engine = make_engine(DatabaseConfig(url=f"sqlite:///{tmp_path / 'q.db'}"))
    upgrade(engine)
    sessions = session_factory(engine)
    client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=2)
    server.stop()
    try:
        with pytest.raises(QueueUnavailable) as err:
            submit(sessions, client, cfg, kind="tool_check", params={}, requester="dan")
        assert str(err.value).startswith("the report queue is unavailable: ")
        assert count(sessions) == 0
    finally:
        client.close()
        engine.dispose()


def test_entries_that_do_not_decode_or_name_no_request_are_dead_lettered(
    cfg: RepsysConfig, redis_client: redis.Redis, make_runner: Callable[..., Harness]
) -> None:
    redis_client.xadd(keys.REPORT_QUEUE, {"v": "9", "body": "{}"})
    redis_client.xadd(keys.REPORT_QUEUE, {"v": "1", "body": "not json"})
    redis_client.xadd(
        keys.REPORT_QUEUE,
        {
            "v": "1",
            "body": json.dumps(
                {
                    "v": 1,
                    "id": "ghost",
                    "kind": "tb",
                    "params": {},
                    "requested_at": "2024-07-07T10:00:00+00:00",
                }
            ),
        },
    )
    harness = make_runner(cfg)
    assert harness.burst() == 3
    dead: list[Any] = list(redis_client.xrange(keys.REPORT_DEAD_LETTERS) or [])
    assert [fields["reason"] for _, fields in dead] == [
        "unknown_version",
        "bad_field",
        "unknown_request",
    ]
    assert dead[0][1]["detail"] == "unknown report request version '9'"
    assert dead[2][1]["detail"] == "no request ghost"
    assert redis_client.xlen(keys.REPORT_QUEUE) == 0
    assert (
        sample(harness.registry, "repsys_runner_dead_letters_total", {"reason": "unknown_request"})
        == 1
    )


def test_requests_that_differ_anywhere_never_coalesce() -> None:
    """The dedupe key is a hash of all the parameters, not a text cut at 256 characters."""
    long = "x" * 300
    one = Normalized(params={"note": long + "a", "pcns": [1]}, name="n")
    two = Normalized(params={"note": long + "b", "pcns": [1]}, name="n")
    same = Normalized(params={"pcns": [1], "note": long + "a"}, name="other name")
    assert one.dedupe_key("tb") != two.dedupe_key("tb")
    assert one.dedupe_key("tb") == same.dedupe_key("tb")  # key order does not matter
    assert one.dedupe_key("tb") != one.dedupe_key("escalation")
    assert len(one.dedupe_key("escalation")) <= 256  # fits the column
