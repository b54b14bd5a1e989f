"""The report mutex against a real Redis: permits, fencing numbers, expiry, renewal,
release by the holder only, the wake-up hand-over, and the database fence."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.db.schema import Fence
from core.lifecycle import Stopper
from core.metrics import new_registry, sample
from repsys.servers import wait_until
from runner.errors import FenceRejected, LeaseLost
from runner.fence import current_fence, fenced
from runner.metrics import RunnerMetrics
from runner.mutex import LeaseKeeper, Mutex


def test_one_permit_one_holder_and_fences_increase(redis_client: redis.Redis) -> None:
    mutex = Mutex(redis_client, "tb", permits=1, ttl_s=30)
    first = mutex.try_acquire()
    assert first is not None and first.fence == 1
    assert mutex.try_acquire() is None
    assert first.release() is True
    second = mutex.try_acquire()
    assert second is not None and second.fence == 2
    assert int(redis_client.get(keys.report_fence("tb")) or 0) == 2


def test_the_holder_exports_since_when_it_holds_the_mutex(redis_client: redis.Redis) -> None:
    registry = new_registry()
    mutex = Mutex(redis_client, "tb", permits=1, ttl_s=30, metrics=RunnerMetrics(registry))
    before = time.time()
    lease = mutex.try_acquire()
    assert lease is not None
    held_since = sample(registry, "repsys_runner_mutex_held_since_seconds", {"kind": "tb"})
    assert held_since is not None and before <= held_since <= time.time()
    assert mutex.try_acquire() is None  # a refused attempt leaves the holder's time alone
    assert sample(registry, "repsys_runner_mutex_held_since_seconds", {"kind": "tb"}) == held_since
    lease.release()
    assert sample(registry, "repsys_runner_mutex_held_since_seconds", {"kind": "tb"}) == 0


def test_n_permits(redis_client: redis.Redis) -> None:
    mutex = Mutex(redis_client, "escalation", permits=3, ttl_s=30)
    leases = [mutex.try_acquire() for _ in range(3)]
    assert all(lease is not None for lease in leases)
    assert mutex.try_acquire() is None
    assert sorted(lease.fence for lease in leases if lease) == [1, 2, 3]
    assert leases[1] is not None and leases[1].release()
    assert mutex.try_acquire() is not None


def test_only_the_holder_releases_or_renews(redis_client: redis.Redis) -> None:
    mutex = Mutex(redis_client, "tb", ttl_s=30)
    lease = mutex.try_acquire()
    assert lease is not None
    assert mutex.release("not-the-token") is False
    assert mutex.renew("not-the-token") is False
    assert mutex.try_acquire() is None
    assert lease.renew() is True
    assert lease.release() is True
    assert lease.release() is False


def test_an_expired_lease_is_free_and_cannot_be_renewed(redis_client: redis.Redis) -> None:
    mutex = Mutex(redis_client, "tb", ttl_s=0.3)
    stale = mutex.try_acquire()
    assert stale is not None
    wait_until(lambda: mutex.try_acquire() is not None, timeout=5, what="lease expiry")
    assert stale.renew() is False
    assert stale.release() is False


def test_waiter_is_woken_by_the_release(redis_client: redis.Redis) -> None:
    registry = new_registry()
    mutex = Mutex(redis_client, "tb", ttl_s=30, metrics=RunnerMetrics(registry))
    holder = mutex.try_acquire()
    assert holder is not None
    got: list[int] = []
    waits: list[int] = []

    def wait() -> None:
        lease = mutex.acquire(Stopper(), poll_s=5.0, on_wait=lambda: waits.append(1))
        assert lease is not None
        got.append(lease.fence)

    thread = threading.Thread(target=wait)
    thread.start()
    wait_until(lambda: len(waits) >= 1, timeout=5, what="waiter waiting")
    released_at = time.monotonic()
    holder.release()
    thread.join(timeout=10)
    # The poll is 5 s; the wake-up list hands over long before it.
    assert got == [2]
    assert time.monotonic() - released_at < 2.5
    assert sample(registry, "repsys_runner_mutex_wait_seconds_count", {"kind": "tb"}) == 1


def test_a_stopped_waiter_gives_up(redis_client: redis.Redis) -> None:
    mutex = Mutex(redis_client, "tb", ttl_s=30)
    assert mutex.try_acquire() is not None
    stopper = Stopper()
    stopper.stop()
    assert mutex.acquire(stopper, poll_s=0.1) is None


def test_keeper_renews_and_notices_a_lost_lease(redis_client: redis.Redis) -> None:
    registry = new_registry()
    mutex = Mutex(redis_client, "tb", ttl_s=0.6)
    lease = mutex.try_acquire()
    assert lease is not None
    ticks: list[int] = []
    with LeaseKeeper(
        lease, period_s=0.1, on_tick=lambda: ticks.append(1), metrics=RunnerMetrics(registry)
    ) as keeper:
        wait_until(lambda: len(ticks) >= 10, timeout=5, what="renewals")  # past 1.5 TTLs
        keeper.check()  # still ours: renewed in time
        redis_client.delete(keys.report_mutex("tb"))  # someone (an operator) broke it
        wait_until(keeper.lost.is_set, timeout=5, what="loss noticed")
        with pytest.raises(LeaseLost):
            keeper.check()
    assert sample(registry, "repsys_runner_lease_lost_total", {"kind": "tb"}) == 1


def test_database_fence_refuses_an_older_writer(
    runner_config: Callable[..., RepsysConfig], sessions: sessionmaker[Session]
) -> None:
    with fenced(sessions, "tb", 5) as session:
        session.add(Fence(kind="other", fence=1))
    assert current_fence(sessions, "tb") == 5
    with fenced(sessions, "tb", 5):  # the same run may load again
        pass
    with pytest.raises(FenceRejected) as err, fenced(sessions, "tb", 4) as session:
        session.add(Fence(kind="never", fence=1))
    assert str(err.value) == (
        "fence 4 of kind 'tb' is older than the database's 5: a newer run owns the data; "
        "nothing was written"
    )
    with sessions() as s:
        assert s.get(Fence, "never") is None  # the stale transaction wrote nothing
    with fenced(sessions, "tb", 7):
        pass
    assert current_fence(sessions, "tb") == 7
