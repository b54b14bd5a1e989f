"""The read sent ahead under a backlog (``read_once`` in ``rules/worker.py``).

When a partition's batch comes back full the worker sends the next read before it
evaluates this one, so that Redis prepares it meanwhile. A read in flight holds entries
delivered to the worker and not yet evaluated: these tests pin down that each is
evaluated exactly once whatever happens to the partition meanwhile (a clean stop, a
lease that lapses and is taken again), on a real redis-server and database.
"""

from __future__ import annotations

from core import keys
from repsys.servers import wait_until
from rules.worker import RulesWorker
from tests.rules.helpers import episodes, make_worker, pending, push, tickets
from tests.rules.test_worker import FP, T0, P, early_change, rules_cfg

BATCH = 2
PART = keys.partition_of("cnc103", P)


def _cfg(make_config):
    # Every early change is an episode of its own, so a pair evaluated twice shows.
    return rules_cfg(
        make_config, short={"keep_firing_for_s": 0}, rules={"worker": {"batch_size": BATCH}}
    )


def _one_read_in_flight(make_config, redis_client, sqlite_engine) -> RulesWorker:
    """A worker that evaluated the first of two early changes and read the second ahead."""
    push(redis_client, early_change(T0) + early_change(T0 + 10, reached=50), P)
    worker = make_worker(_cfg(make_config), redis_client, sqlite_engine)
    worker.round()
    assert worker.read_once() == BATCH
    # The second pair was delivered while the first was evaluated: read, not evaluated.
    assert worker.stats.entries == BATCH
    wait_until(lambda: pending(redis_client, P) == 2 * BATCH, timeout=5, what="the read ahead")
    assert [e.occurrence for e in episodes(sqlite_engine)] == [1]
    return worker


def test_a_full_batch_sends_the_next_read_and_a_clean_stop_evaluates_it(
    make_config, redis_client, sqlite_engine
) -> None:
    worker = _one_read_in_flight(make_config, redis_client, sqlite_engine)

    worker.shutdown()

    assert worker.stats.entries == 2 * BATCH
    assert [(e.fingerprint, e.occurrence) for e in episodes(sqlite_engine)] == [(FP, 1), (FP, 2)]
    assert pending(redis_client, P) == 0  # evaluated and acknowledged, none left pending
    assert not redis_client.exists(keys.rules_lease(PART))


def test_a_read_in_flight_when_its_lease_lapses_is_evaluated_once(
    make_config, redis_client, sqlite_engine
) -> None:
    worker = _one_read_in_flight(make_config, redis_client, sqlite_engine)

    # The lease lapses (a long pause); the worker's next round takes the partition again,
    # claiming its pending entries, the ones read ahead among them. Evaluated before the
    # partition changed hands, they are replayed from the claim onto episodes already
    # written; evaluated after it too, the second pair would open a third episode.
    redis_client.delete(keys.rules_lease(PART))
    worker.round()
    assert PART in worker.held
    while worker.read_once():
        assert worker.commit()
    worker.checkpoint_all()

    assert [(e.fingerprint, e.occurrence) for e in episodes(sqlite_engine)] == [(FP, 1), (FP, 2)]
    assert len(tickets(sqlite_engine)) == 2
    assert worker.stats.replays == 2  # the claimed pairs met their episodes
    assert pending(redis_client, P) == 0
