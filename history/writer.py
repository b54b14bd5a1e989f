"""``repsys history``: signal streams → Parquet files in the object store.

The writer reads every partition stream in its own consumer group (``keys.HISTORY_GROUP``),
so the rules engine's reading is untouched. Per partition it gathers entries until a
file is full (``file_rows``) or old (``file_age_s``), splits them into runs of one plant
date, stores each run as one file named by its id range, and only then acknowledges the
entries (XACK). Nothing is acknowledged that is not in a stored file.

After a crash the entries of the last files may be stored but not acknowledged. On
start, and whenever it re-reads its own pending entries, the writer looks for a file
that begins at the first pending id; if one is there, the entries it holds are
acknowledged without writing anything (a second copy is never written). Files are
stored atomically (the store's put), so a kill during a write leaves no partial file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError, ResponseError
from redis.typing import KeyT, StreamIdT

from core import keys
from core.config import RepsysConfig
from core.lifecycle import Stopper
from core.logs import get_logger
from core.redis import RedisCommands
from core.storage import StorageError, Store
from history import files
from history.errors import HistoryUnavailable
from history.files import EntryId
from history.metrics import HistoryMetrics

log = get_logger(__name__)
#: A stream entry as read: its id text and its fields (ids are parsed only when compared).
Entry = tuple[str, dict[str, str]]


@dataclass
class Pending:
    """Entries of one partition read but not yet stored."""

    entries: list[Entry] = field(default_factory=list)
    since: float = 0.0
    #: Some entries were re-read from the pending list: a file may already hold them.
    replayed: bool = False


class HistoryWriter:
    """One history process: a consumer of every configured partition."""

    def __init__(
        self,
        cfg: RepsysConfig,
        redis: RedisCommands,
        store: Store,
        metrics: HistoryMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.h = cfg.history
        self.redis = redis
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.zone = ZoneInfo(cfg.plant.timezone)
        self.partitions = self.h.partitions or list(range(cfg.streams.partitions))
        self.buffers = {p: Pending() for p in self.partitions}
        #: Partitions whose own pending entries are still to be re-read (start, crash).
        self.recovering = set(self.partitions)
        #: Signals stored by this writer so far.
        self.stored = 0

    # --- set-up ------------------------------------------------------------------------

    def ensure_groups(self) -> None:
        """Create the history group on every stream (from its start: keep what is there)."""
        for p in self.partitions:
            try:
                self.redis.xgroup_create(
                    keys.signal_stream(p), keys.HISTORY_GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # --- the loop ----------------------------------------------------------------------

    def step(self, *, block: bool) -> int:
        """Read once from every partition, store what is due; entries handled."""
        streams = {keys.signal_stream(p): p for p in self.partitions}
        handled = 0
        for stream, p in streams.items():
            handled += self._read(stream, p)
        for p in self.partitions:
            buf = self.buffers[p]
            due = len(buf.entries) >= self.h.file_rows or (
                buf.entries and self.clock() - buf.since >= self.h.file_age_s
            )
            if due:
                self.flush(p)
        if not handled and block:
            # Nothing anywhere: wait for new entries on all partitions at once.
            waiting: dict[KeyT, StreamIdT] = {
                s: ">" for s, p in streams.items() if p not in self.recovering
            }
            if waiting:
                reply = self.redis.xreadgroup(
                    keys.HISTORY_GROUP, self.h.consumer, waiting, count=1, block=self.h.block_ms
                )
                for stream, got in reply or []:
                    self._take(streams[stream], got, replayed=False)
                    handled += len(got)
        return handled

    def _read(self, stream: str, p: int) -> int:
        buf = self.buffers[p]
        room = self.h.file_rows - len(buf.entries)
        if room <= 0:
            return 0
        count = min(self.h.read_count, room)
        if p in self.recovering:
            # Our own pending entries first, after those already in the buffer.
            start = buf.entries[-1][0] if buf.entries else "0"
            reply = self.redis.xreadgroup(
                keys.HISTORY_GROUP, self.h.consumer, {stream: start}, count
            )
            raw = reply[0][1] if reply else []
            if not raw:
                self.recovering.discard(p)
                return 0
            # A pending entry trimmed from the stream comes back without fields: there is
            # nothing to store, so it is acknowledged (and counted) to leave the list.
            gone = [i for i, f in raw if not f]
            if gone:
                self.redis.xack(stream, keys.HISTORY_GROUP, *gone)
                self.metrics.skipped.labels("trimmed").inc(len(gone))
            self._take(p, [(i, f) for i, f in raw if f], replayed=True)
            return len(raw)
        reply = self.redis.xreadgroup(keys.HISTORY_GROUP, self.h.consumer, {stream: ">"}, count)
        got = reply[0][1] if reply else []
        self._take(p, got, replayed=False)
        return len(got)

    def _take(self, p: int, got: list[tuple[str, dict[str, str]]], *, replayed: bool) -> None:
        if not got:
            return
        buf = self.buffers[p]
        if not buf.entries:
            buf.since = self.clock()
        buf.replayed = buf.replayed or replayed
        buf.entries.extend(got)

    # --- storing -----------------------------------------------------------------------

    def flush(self, p: int) -> int:
        """Store partition ``p``'s buffer as files (one per plant date), then XACK it."""
        buf = self.buffers[p]
        entries, replayed = buf.entries, buf.replayed
        buf.entries, buf.replayed = [], False
        written = 0
        try:
            for day, run in self._runs(entries):
                written += self._store_run(p, day, run, replayed=replayed)
        except HistoryUnavailable:
            # What was not acknowledged stays pending: re-read it, checking the store.
            self.recovering.add(p)
            raise
        return written

    def _runs(self, entries: list[Entry]) -> list[tuple[date, list[Entry]]]:
        if not entries:
            return []
        # Ids only grow: when the first and last entry share a date, so do all between
        # (the usual case; a date for every entry would cost a third of the write rate).
        first = files.plant_date(EntryId.parse(entries[0][0]), self.zone)
        if first == files.plant_date(EntryId.parse(entries[-1][0]), self.zone):
            return [(first, entries)]
        runs: list[tuple[date, list[Entry]]] = []
        for entry in entries:
            day = files.plant_date(EntryId.parse(entry[0]), self.zone)
            if runs and runs[-1][0] == day:
                runs[-1][1].append(entry)
            else:
                runs.append((day, [entry]))
        return runs

    def _store_run(self, p: int, day: date, run: list[Entry], *, replayed: bool) -> int:
        stream = keys.signal_stream(p)
        # Entries read as new (">") were never delivered to this group before, so no file
        # can hold them; only re-read pending entries need the look-up.
        while run and replayed:
            stored = self._stored_from(p, day, EntryId.parse(run[0][0]))
            if stored is None:
                break
            done = [e for e in run if EntryId.parse(e[0]) <= stored]
            run = [e for e in run if EntryId.parse(e[0]) > stored]
            self._ack(stream, done)
            self.metrics.skipped.labels("stored").inc(len(done))
            log.info("history_already_stored", partition=p, entries=len(done), last=str(stored))
        if not run:
            return 0
        first, last = EntryId.parse(run[0][0]), EntryId.parse(run[-1][0])
        key = files.file_key(self.h.prefix, day, p, first, last)
        data, rows, bad = files.build(run, self.h.compression)
        try:
            self.store.put_bytes(key, data)
        except StorageError as exc:
            self.metrics.failures.labels(exc.reason).inc()
            raise HistoryUnavailable(f"storing {key} failed: {exc}") from exc
        self._ack(stream, run)
        self.stored += rows
        self.metrics.files.inc()
        self.metrics.bytes.inc(len(data))
        self.metrics.signals.inc(rows)
        if bad:
            self.metrics.skipped.labels("decode").inc(bad)
        log.debug("history_file_written", partition=p, key=key, rows=rows, bytes=len(data))
        return rows

    def _stored_from(self, p: int, day: date, first: EntryId) -> EntryId | None:
        """The last id of a stored file whose range holds ``first``, if there is one.

        Containment, not only "starts at": a restart with a smaller ``file_rows`` re-reads
        a stored file's entries in several buffers, the later ones starting inside it.
        """
        for obj in self.store.list(files.folder(self.h.prefix, day, p)):
            span = files.range_of(obj.key)
            if span is not None and span[0] <= first <= span[1]:
                return span[1]
        return None

    def _ack(self, stream: str, entries: list[Entry]) -> None:
        ids = [e[0] for e in entries]
        for i in range(0, len(ids), 10_000):
            self.redis.xack(stream, keys.HISTORY_GROUP, *ids[i : i + 10_000])

    # --- running -----------------------------------------------------------------------

    def drain(self) -> int:
        """Store everything waiting (pending and new), flush every buffer, return rows."""
        self.ensure_groups()
        before = self.stored
        # A step that only finds a partition's pending list empty handles nothing but
        # moves on to new entries: go on until nothing is read and nothing recovers.
        while True:
            recovering = bool(self.recovering)
            if not self.step(block=False) and not recovering:
                break
        for p in self.partitions:
            self.flush(p)
        return self.stored - before

    def run(self, stopper: Stopper, *, keep: Callable[[], bool] | None = None) -> bool:
        """Until stopped: read, store, acknowledge; store the buffers when stopping.

        ``keep`` (the consumer-name lease, ``history/lease.py``) is asked before every
        step; once it says no, the writer stops at once and stores nothing more: its
        buffered entries stay pending for the process that holds the name now. Returns
        False in that case, True after a requested stop.
        """
        self.ensure_groups()
        backoff = 0.5
        while not stopper.stopped:
            if keep is not None and not keep():
                return False
            try:
                self.step(block=True)
                backoff = 0.5
            except (HistoryUnavailable, RedisError) as exc:
                reason = getattr(exc, "reason", "redis")
                log.warning("history_step_failed", reason=reason, error=str(exc))
                stopper.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        for p in self.partitions:
            try:
                self.flush(p)
            except (HistoryUnavailable, RedisError) as exc:
                log.warning("history_final_flush_failed", partition=p, error=str(exc))
        return True


def prune(cfg: RepsysConfig, store: Store, metrics: HistoryMetrics, *, today: date) -> int:
    """Delete files of plant dates older than ``history.retention_days``; files deleted."""
    oldest = today - timedelta(days=cfg.history.retention_days)
    removed = 0
    for obj in store.list(f"{cfg.history.prefix}/"):
        part = next((s for s in obj.key.split("/") if s.startswith("date=")), None)
        if part is None:
            continue
        try:
            day = datetime.strptime(part[5:], "%Y-%m-%d").date()
        except ValueError:
            continue
        if day < oldest:
            store.delete(obj.key)
            removed += 1
    metrics.pruned.inc(removed)
    log.info("history_pruned", files=removed, before=oldest.isoformat())
    return removed
