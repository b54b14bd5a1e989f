"""``repsys rules``: the loop that leases partitions, evaluates them and commits the results.

One round every ``renew_interval_s``: heartbeat, renew leases, give up extras, take free
partitions (restoring their checkpointed state and replaying their pending entries).
Between rounds: read new entries of every partition held (fenced by the lease), decode
(bad entries to the dead-letter stream), evaluate, write the resulting episodes and
tickets to the database in one transaction (retried until it succeeds; nothing is
acknowledged before), write forecasts, tick timers, and every ``checkpoint_interval_s``
checkpoint each partition's state together with the acknowledgement of its entries.

Order of effects per entry, and why it is safe to die anywhere: database commit, then
state + XACK (one Lua step). Dying before the commit: the entries are pending, the state
is older; the next holder replays them from the same state and writes what we would have.
Dying between commit and checkpoint: the replay computes the same episode identities and
finds them written (``rules/sink.py``). Nothing is lost, nothing is written twice.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from core import heap, keys
from core.config import RepsysConfig
from core.lifecycle import Backoff, Stopper
from core.logs import get_logger
from core.model import DecodeError, Signal
from core.redis import RedisCommands, reset_connections
from rules.actions import Action, Forecast
from rules.checkpoint import Checkpoints, Held, Kept
from rules.engine import Engine, Program
from rules.errors import RedisRegressedError, RulesTransientError
from rules.lease import Leases
from rules.live import LiveBoard, LivePublisher
from rules.metrics import RulesMetrics
from rules.reads import Entry, PendingRead
from rules.sink import EpisodeSink, WriteResult, load_episodes, load_silences
from rules.stream import PartitionStream, entry_key

log = get_logger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class RunStats:
    """What a run (or ``--once``) did, for the CLI and tests."""

    entries: int = 0
    dead_letters: int = 0
    episodes: int = 0
    tickets: int = 0
    replays: int = 0


class RulesWorker:
    """A rules worker on its Redis and database."""

    def __init__(
        self,
        cfg: RepsysConfig,
        redis: RedisCommands,
        sessions: sessionmaker[Session],
        metrics: RulesMetrics,
        *,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
        program: Program | None = None,
        on_commit: Callable[[list[Action]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.wcfg = cfg.rules.worker
        self.redis = redis
        self.metrics = metrics
        self.clock = clock
        self.worker_id = worker_id or new_worker_id()
        self.program = program or Program(cfg)
        #: Called with the actions of every committed transaction (observers, benchmarks).
        self.on_commit = on_commit
        self.partitions = cfg.streams.partitions
        self.leases = Leases(
            redis,
            self.worker_id,
            self.partitions,
            lease_ttl_s=self.wcfg.lease_ttl_s,
            worker_ttl_s=self.wcfg.worker_ttl_s,
        )
        self.stream = PartitionStream(redis, self.worker_id)
        self.checkpoints = Checkpoints(
            self.stream, self.worker_id, self.wcfg, metrics, clock=clock, lost=self._lost
        )
        self.live = LivePublisher(redis, LiveBoard.for_program(self.program), clock)
        self.sink = EpisodeSink(sessions, {m.id: m for m in cfg.machines})
        self.sessions = sessions
        self.held: dict[int, Held] = {}
        #: The read sent ahead under a backlog, its reply not yet taken (read_once).
        self._ahead: PendingRead | None = None
        self.silences: list[Any] = []
        self.stats = RunStats()
        self.stopper = Stopper()
        self.ready = False
        self._next_round = 0.0
        self._next_tick = 0.0
        self._kept = Kept()  # engines kept through a Redis outage (decision 0460)
        self._next_silences = 0.0
        self._backoff = Backoff(base_s=0.5, cap_s=self.wcfg.db_retry_cap_s)

    # --- partitions ----------------------------------------------------------------------

    def _take(self, p: int) -> None:
        """Restore partition ``p`` from its checkpoint and replay its pending entries."""
        self.stream.ensure_group(p)
        blobs, progress_id = self.checkpoints.load(p)
        mine = [m.id for m in self.cfg.machines if keys.partition_of(m.id, self.partitions) == p]
        try:
            # A machine of ours without a checkpoint is new, or Redis lost its state: the
            # database says which of its episodes are open, so none opens twice.
            known = load_episodes(self.sessions, [m for m in mine if m not in blobs])
        except RulesTransientError as exc:
            self.leases.release(p)  # taken again once the database answers
            log.warning("partition_take_deferred", partition=p, error=str(exc))
            return
        engine = Engine(self.program)
        engine.load(blobs)
        engine.expect(mine)
        kept = self._kept.pop(p)
        if kept is not None and not blobs and not progress_id:
            # Redis lost the state of a partition this worker held (a restart without
            # persistence): the engine it had is the best state there is; a fresh one
            # forgets every counter's history (decision 0400). All of it is checkpointed.
            engine, known = kept.engine, []
            engine.dirty.update(engine.machines)
            progress_id = kept.last_seen  # the pending entries it has evaluated
        restored = engine.restore(known)
        if restored:
            self.metrics.restored.inc(restored)
            log.warning("episodes_restored", partition=p, episodes=restored)
        engine.set_silences(self.silences)
        held = self.held[p] = Held.resumed(p, engine, progress_id)
        self.metrics.lease_changes.labels("acquired").inc()
        log.info("partition_acquired", partition=p, machines=len(engine.machines))
        for page in self.stream.claim_pending(p):
            self._evaluate(held, page, claimed=True)
            if not self.commit():
                return
        self.checkpoints.write(held)

    def _give_up(self, p: int) -> None:
        """Checkpoint and release ``p`` (a rebalance or a stop)."""
        held = self.held.get(p)
        if held is not None and self.commit() and self.checkpoints.write(held):
            self.leases.release(p)
            self.metrics.lease_changes.labels("released").inc()
            log.info("partition_released", partition=p)
        self.held.pop(p, None)

    def _lost(self, p: int) -> None:
        if self.held.pop(p, None) is not None:
            self.metrics.lease_changes.labels("lost").inc()
            log.warning("partition_lease_lost", partition=p)

    def round(self) -> None:
        """Heartbeat, renew, rebalance (give up extras, take free partitions)."""
        if self._ahead is not None:
            # Its entries are ours to evaluate before a partition is taken: _take claims
            # our pending entries too, and would evaluate them a second time.
            self.read_once(ahead=False)
        lost, extras, target = self.leases.rebalance(sorted(self.held))
        for p in lost:
            self._lost(p)
        for p in extras:
            self._give_up(p)
        if len(self.held) < target:
            # Back from a Redis outage, only the partitions it held for a while (Kept).
            for p in self._kept.only(self.leases.free(self.held), self.clock()):
                if len(self.held) >= target:
                    break
                if self.leases.acquire(p):
                    self._take(p)
        self._kept.expire(self.clock())
        self._observe_backlog()
        self.ready = True

    def _observe_backlog(self) -> None:
        self.metrics.partitions_owned.set(len(self.held))
        self.metrics.partitions_configured.set(self.partitions)
        for p in self.held:
            lag, pending = self.stream.backlog(p)
            self.metrics.lag.labels(str(p)).set(lag)
            self.metrics.pending.labels(str(p)).set(pending)

    # --- evaluation ----------------------------------------------------------------------

    def _evaluate(self, held: Held, entries: list[Entry], *, claimed: bool = False) -> None:
        engine = held.engine
        process = engine.process
        # Only entries claimed from the pending list can be older than the checkpoint
        # (a checkpoint written just before its acknowledgement could not be); new ones
        # never are, so they skip the comparison.
        progress = held.progress if claimed else (0, 0)
        replayed = 0
        held.unacked.extend(e[0] for e in entries)
        decode = Signal.from_flat
        note = self.live.note
        if entries and not held.oldest_rx:
            held.oldest_rx = time.time()  # refined below from the first entry's receive time
            first_rx = True
        else:
            first_rx = False
        for entry_id, fields in entries:
            if progress != (0, 0) and entry_key(entry_id) <= progress:
                replayed += 1  # already reflected in the checkpointed state
                continue
            try:
                sig = decode(fields)
            except DecodeError as err:
                self.stream.dead_letter(held.p, entry_id, fields, err)
                self.metrics.dead_letters.labels(err.reason).inc()
                self.stats.dead_letters += 1
                log.warning("entry_dead_lettered", partition=held.p, id=entry_id, reason=err.reason)
                continue
            if first_rx:
                held.oldest_rx = sig.receive_ts or held.oldest_rx
                first_rx = False
            process(sig)
            note(sig)
        if entries:
            last = entries[-1][0]
            held.last_seen = last
            if entry_key(last) > held.progress:
                held.progress, held.progress_id = entry_key(last), last
        n = len(entries)
        self.stats.entries += n
        self.metrics.signals.inc(n - replayed)
        if replayed:
            self.metrics.ignored.labels("replayed").inc(replayed)

    def read_once(self, *, ahead: bool = True) -> int:
        """Read and evaluate one batch from every partition held; entries read.

        Under a backlog (a partition's batch came back full) the next read is sent before
        this batch is evaluated, and taken by the next call: Redis prepares it on the
        other core meanwhile, instead of the worker waiting for it (``bench/rules.py``).
        A partition given up or lost while its read was in flight is skipped: its
        entries stay pending, and whoever takes it next claims them.
        """
        if not self.held:
            return 0
        started = time.perf_counter()
        size = self.wcfg.batch_size
        pending, self._ahead = self._ahead, None
        if pending is None:
            pending = self.stream.send_read(sorted(self.held), size)
        replies = pending.result()
        if ahead and any(r is not None and len(r[0]) >= size for r in replies.values()):
            self._ahead = self.stream.send_read(sorted(self.held), size)
        got = 0
        for p, reply in replies.items():
            if reply is None:
                self._lost(p)
                continue
            held = self.held.get(p)
            if held is None:
                continue  # lost while the read was in flight (see above)
            entries, last_id = reply
            if entries and entry_key(entries[0][0]) <= entry_key(held.last_seen):
                # New entries are always past the last one seen: the group's delivery
                # point went back, so Redis lost writes (a failover before they were
                # replicated) and our checkpoint may be among them.
                raise RedisRegressedError(
                    f"partition {p}: entry {entries[0][0]} delivered again after {held.last_seen}"
                )
            if entries:
                got += len(entries)
                self._evaluate(held, entries)
                if held.engine.ctx.actions:
                    # An episode waits for no other partition's evaluation.
                    self.commit()
            elif last_id:
                held.last_seen = last_id
        if got:
            # Not per signal: the boards' live hashes, at most every interval (rules/live.py).
            self._flush_live()
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return got

    def _flush_live(self, *, force: bool = False) -> None:
        self.live.flush([h.engine.machines for h in self.held.values()], force=force)

    def tick(self, now: float | None = None) -> None:
        at = self.clock() if now is None else now
        for held in self.held.values():
            held.engine.tick(at)

    # --- effects -----------------------------------------------------------------------

    def _collect(self) -> tuple[list[tuple[Held, list[Action]]], list[Forecast]]:
        batches: list[tuple[Held, list[Action]]] = []
        forecasts: list[Forecast] = []
        for held in self.held.values():
            engine = held.engine
            actions, fc = engine.take()
            if actions:
                batches.append((held, actions))
            forecasts += fc
            self.metrics.count(engine)
        return batches, forecasts

    def commit(self) -> bool:
        """Write pending actions and forecasts, retrying until done or stopped.

        Returns False when stopped before the write succeeded: every partition is then
        dropped without checkpoint, so its entries stay pending and replay later.
        """
        batches, forecasts = self._collect()
        if batches:
            actions = [a for _, batch in batches for a in batch]
            while True:
                try:
                    result = self.sink.write(actions)
                    break
                except RulesTransientError as exc:
                    self.metrics.db_writes.labels("retry").inc()
                    delay = self._backoff.next()
                    log.warning("episode_write_failed", error=str(exc), retry_in_s=round(delay, 2))
                    if not self._wait_renewing(delay):
                        # Not committed: nothing is acknowledged; the entries replay later.
                        self._drop_all()
                        return False
            self._backoff.reset()
            if self.on_commit is not None:
                self.on_commit(actions)
            self.metrics.db_writes.labels("ok").inc()
            self.metrics.replays.inc(result.replays)
            self.stats.episodes += result.episodes
            self.stats.tickets += result.tickets
            self.stats.replays += result.replays
            self._feed_back(result, [held for held, _ in batches])
        if forecasts:
            self.live.forecasts(forecasts)
        now = time.time()
        for held in self.held.values():
            if held.oldest_rx:
                self.metrics.latency.observe(max(0.0, now - held.oldest_rx))
                held.oldest_rx = 0.0
        return True

    def _wait_renewing(self, seconds: float) -> bool:
        """Wait ``seconds``, renewing the leases every ``renew_interval_s`` (a database
        retry's backoff outlasts a lease: the partitions, and the state evaluated here,
        stay with this worker). False when stopped meanwhile."""
        end = time.monotonic() + seconds
        while True:
            for p in self.leases.renew(sorted(self.held)):
                self._lost(p)
            left = end - time.monotonic()
            if left <= 0:
                return True
            if self.stopper.wait(min(left, self.wcfg.renew_interval_s)):
                return False

    def _feed_back(self, result: WriteResult, helds: list[Held]) -> None:
        """What the database said back: moved occurrences, tickets closed in Plex."""
        for held in helds:
            for remap in result.remaps:
                held.engine.remap(remap.machine, remap.fingerprint, remap.old, remap.new)
            for machine, fp, occurrence in result.closed:
                held.engine.forget(machine, fp, occurrence)

    def checkpoint_all(self) -> None:
        self.checkpoints.all(self.held)

    def _drop_all(self) -> None:
        """Forget every partition without checkpoint (their entries stay pending).

        Their engines are kept a while (:class:`rules.checkpoint.Kept`), for :meth:`_take`
        if Redis lost them.
        """
        # A take cut short by the error left its engine in ``held``: kept too. Engines
        # kept from an earlier outage and not taken back yet stay (their state may be
        # the only one there is); the window starts again.
        self._kept.keep(self.held, self.clock() + self.wcfg.worker_ttl_s)
        self.held.clear()
        self._ahead = None
        # A read in flight is dropped with its connection; none in flight, the connection
        # still goes: the next read takes one to whatever the master is now.
        self.stream.abandon()

    def refresh_silences(self) -> None:
        try:
            self.silences = load_silences(self.sessions, self.clock())
        except RulesTransientError as exc:
            log.warning("silences_unavailable", error=str(exc))
            return
        for held in self.held.values():
            held.engine.set_silences(self.silences)

    # --- loops -------------------------------------------------------------------------

    def step(self) -> None:
        """One iteration of the long-running loop."""
        now = self.clock()
        if now >= self._next_round:
            self.round()
            self._next_round = now + self.wcfg.renew_interval_s
        if now >= self._next_silences:
            self.refresh_silences()
            self._next_silences = now + self.wcfg.silence_refresh_s
        got = self.read_once()
        if now >= self._next_tick:
            self.tick(now)
            self._next_tick = now + self.wcfg.tick_interval_s
        if not self.commit():
            return
        self.checkpoints.due(self.held, now)
        if got == 0:
            wait_s = min(self._next_round, self._next_tick) - self.clock()
            block = int(max(1.0, min(self.wcfg.block_ms, wait_s * 1000)))
            if self.held:
                self.stream.wait({p: h.last_seen for p, h in self.held.items()}, block)
            else:
                self.stopper.wait(block / 1000)

    def run(self, stopper: Stopper) -> RunStats:
        """Until stopped; then commit, checkpoint, release the leases and leave."""
        log.info("rules_worker_started", worker=self.worker_id, partitions=self.partitions)
        self.stopper = stopper
        heap.settle()  # what is alive now lives as long as the process (core/heap.py)
        # Capped low: a worker slow to come back after a failover leaves its partitions
        # unevaluated, and its kept engines unused (_drop_all), for as long as it waits.
        redis_backoff = Backoff(base_s=0.25, cap_s=2.0)
        try:
            while not stopper.stopped:
                try:
                    self.step()
                    redis_backoff.reset()
                except (RedisConnectionError, RedisTimeoutError, RedisRegressedError) as exc:
                    # Our leases may expire while Redis is away, and a failover may lose
                    # what we wrote last: start over from the checkpoints (what was
                    # committed to the database replays idempotently).
                    self.ready = False
                    self._drop_all()
                    # Every pooled connection may lead to the server that went away: the
                    # next commands would each fail once more, one of them in the middle
                    # of the next take (decision 0460).
                    reset_connections(self.redis)
                    delay = redis_backoff.next()
                    log.warning("redis_unavailable", error=str(exc), retry_in_s=round(delay, 2))
                    stopper.wait(delay)
                    self._next_round = 0.0
        finally:
            self.shutdown()
        return self.stats

    def shutdown(self) -> None:
        try:
            if self._ahead is not None and self.held:
                self.read_once(ahead=False)  # what was read is evaluated, not left pending
            if self.held and self.commit():
                self._flush_live(force=True)
                for p in sorted(self.held):
                    self._give_up(p)
            self.leases.leave()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("rules_shutdown_without_redis", error=str(exc))
        self.stream.close()
        self.metrics.partitions_owned.set(0)
        log.info("rules_worker_stopped", worker=self.worker_id, entries=self.stats.entries)

    def once(self, now: float | None = None) -> RunStats:
        """One-shot: take every free partition, drain it, tick, commit, release."""
        self.refresh_silences()
        for p in self.leases.free():
            if self.leases.acquire(p):
                self._take(p)
        while self.read_once():
            if not self.commit():
                return self.stats
        self._flush_live(force=True)
        self.tick(now)
        if not self.commit():
            return self.stats
        self.checkpoint_all()
        for p in sorted(self.held):
            self._give_up(p)
        return self.stats
