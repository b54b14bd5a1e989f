"""``repsys soak --chaos``: the real processes under a seeded chaos schedule, on the wall clock.

Starts the node of ``repsys/chaos_node.py`` (Sentinel group, mosquitto, PostgreSQL, the
simulated Plex, the collector, two rules workers, two Plex senders, runner, scheduler, web)
and the plant (``repsys/chaos_plant.py``) for ``--minutes``, and acts out the plans of
``repsys/chaos_schedule.py`` (printed first; the seed repeats them). Then it stops the
plant, lets the pipeline drain, stops the rules (a plant that stopped publishing would
otherwise be "no data" a minute later) and lets the senders settle, and reports:

* **tickets**: the episodes in the database matched against the plant's ledger
  (``repsys/soak_match.py``: true, false, missed, duplicate), and in the simulated Plex:
  each rule ticket filed exactly once, no Plex ticket RepSys does not know, each
  operator submission (sent twice, with one ``Idempotency-Key``) exactly once;
* **recovery** of each chaos event: from its start until every check of its kind holds
  again (``CHECKS``): ``ready`` (the process's ``/readyz``), ``stream`` (the rules group
  has read, on every partition that carries traffic, an entry written after the event),
  ``outbox`` (no ticket written before the event's end is still unfiled), ``filed`` (the
  double submit's ticket is in Plex);
* **signals lost**, by input (MQTT, OPC UA, UDP): the plant's offered signals (decoded as
  the collector does) against the stream entries the harness read while the run went on
  (every 0.25 s). MQTT loses nothing (QoS 1, acknowledged after the write). OPC UA and UDP
  have no acknowledgement: what they offer while the collector is down (from 2 s before
  its kill until the restarted collector's first signal from that input, or its
  ``/readyz`` if later: that input's **outage window**; the new process takes a source
  only when the killed one's lease expires, after ``/readyz``) may be lost, the documented
  loss, counted apart (an OPC UA subscription re-reads each tag's current value on
  reconnect, so only the values it replaced are lost). A loss outside every window fails
  the run. A fault the rules missed whose evidence (the datagram of a counter fault, the
  run state of a stop) was lost in a window is **not shown**, not missed, and a counter
  ticket on the UDP machine that follows a datagram lost in a window (the plants' rule
  reports any reading that does not continue the other pallet's, a lost one too) is
  **false after a UDP loss**, listed apart from the false positives, and fails the run
  too: the UDP reader marks each tool's first reading after its start ``resync`` and the
  rules compare it with nothing (decision 0470). A Redis restart
  without persistence empties the streams: what was written after the harness's last
  read (from a second before it) until the restart is **lost in a Redis wipe** on any
  input, counted apart (RepSys's rules lose it too: acknowledged data Redis threw away);
* **poison**: every malformed payload the plant sent (``repsys/chaos_poison.py``) is found
  in the collector's dead-letter stream (read every 0.25 s, since a Redis restart without
  persistence empties it) with the reason its decoder gives, none reached a signal
  stream, and each input delivered signals after its last poison (intake never stopped);
  a UDP or OPC UA poison sent in an outage window is "not received";
* **memory**: every process's RSS at the start and the end (``repsys/procstat.py``).
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from collector.opcua.intake import HEARTBEAT_SIGNAL
from core import keys
from core.model import Signal
from repsys import chaos_poison as poisons
from repsys.chaos_node import COMMANDS, COMMIT_DELAY_S, Node, machine_ids
from repsys.chaos_plant import signal_key
from repsys.chaos_schedule import (
    COUNTER_KINDS,
    DOWN_KINDS,
    OPCUA_TAGS,
    ChaosEvent,
    chaos_events,
    plant_scenario,
    transports,
)
from repsys.harness import HarnessError, http_ready
from repsys.procstat import sample
from repsys.soak_match import Episode, latency_by_kind, match
from sim.plant.ledger import read_ledger

#: The checks that say a chaos event is over, by event kind (module docstring).
CHECKS: dict[str, tuple[str, ...]] = {
    "kill:collector": ("ready", "stream"),
    "kill:rules": ("ready", "stream"),
    "kill:plex-sender": ("ready", "outbox"),
    "kill:runner": ("ready",),
    "kill:scheduler": ("ready",),
    "kill:web": ("ready",),
    "redis_failover": ("ready_all", "stream"),
    "redis_restart_empty": ("ready_all", "stream"),
    "postgres_restart": ("ready_all", "stream", "outbox"),
    "mosquitto_restart": ("ready_all", "stream"),
    "plex_outage": ("outbox",),
    "plex_latency": ("outbox",),
    "plex_429": ("outbox",),
    "plex_commit_late": ("outbox",),
    "double_submit": ("filed",),
}
#: The recovery bound (decision 0400): an event not recovered within it fails the run.
RECOVERY_BOUND_S = 90.0
PLEX_FAULT = {
    "plex_outage": "http_500",
    "plex_latency": "latency",
    "plex_429": "http_429",
    "plex_commit_late": "commit_late",
}
PLEX_RATE = {"plex_outage": 1.0, "plex_latency": 1.0, "plex_429": 0.5, "plex_commit_late": 0.5}
GRACE_S = 300.0
POLL_S = 0.25
#: An outage window of the collector opens this long before its kill: values an OPC UA
#: subscription or the UDP socket handed over just before it may still be in the sink's
#: buffer (written every few milliseconds) when the process dies.
OUTAGE_BEFORE_S = 2.0
#: ... and closes this long after the restarted collector's first signal of the input
#: (or its /readyz, if later: the harness polls every 0.25 s).
OUTAGE_AFTER_S = 1.0
#: Evidence of a fault is what the plant offered within this of the fault's start.
EVIDENCE_S = 2.0
#: A counter ticket on the UDP machine this long after a datagram of its tool was lost
#: in an outage is attributed to the loss (the next reading of the other pallet comes
#: within two cycles).
AFTER_LOSS_S = 120.0
POISON_MARK = re.compile(r"P\d{5}Z")
PATHS = ("mqtt", "opcua", "udp")


def path_of(paths: dict[str, str], machine: str, name: str) -> str:
    """The input a signal came through (``repsys.chaos_schedule.transports``)."""
    where = paths.get(machine, "mqtt")
    if where == "opcua" and (name in OPCUA_TAGS or name == HEARTBEAT_SIGNAL):
        return "opcua"
    if where == "udp" and name in ("machining_event", "tool_change"):
        return "udp"
    return "mqtt"


def _key_parts(key: str) -> tuple[str, str, str]:
    machine, name, subject = key.split("|", 3)[:3]
    return machine, name, subject


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def inside(windows: list[tuple[float, float]], at: float) -> bool:
    return any(a <= at <= b for a, b in windows)


def losses(
    offered: Counter[str],
    seen: Counter[str],
    offered_at: dict[str, list[float]],
    paths: dict[str, str],
    windows: dict[str, list[tuple[float, float]]],
    *,
    wipes: list[tuple[float, float]] | None = None,
) -> tuple[dict[str, dict[str, int]], dict[str, list[float]]]:
    """Per input: offered, in the streams, lost in an outage window, lost in a Redis wipe,
    lost beyond; and the offered times of the signals lost in an outage, by key (the
    evidence lost).

    A key offered ``n`` times and seen ``m < n`` times lost ``n - m``; on OPC UA and UDP
    as many of them as were offered inside an outage window are the documented loss; of
    the rest, as many as were offered inside a Redis wipe (``wipes``: a restart without
    persistence took what the harness had not read yet, on every input) are counted as
    such; the others are lost beyond the documented loss.
    """
    out = {p: dict.fromkeys(("offered", "in_streams", "lost_in_outage", "lost_in_redis_wipe",
                             "lost", "redelivered"), 0) for p in PATHS}  # fmt: skip
    lost_at: dict[str, list[float]] = {}
    for key in offered.keys() | seen.keys():
        machine, name, _ = _key_parts(key)
        path = path_of(paths, machine, name)
        row = out[path]
        n, m = offered[key], seen[key]
        row["offered"] += n
        row["in_streams"] += m
        if m > n:
            row["redelivered"] += m - n
            continue
        gone = n - m
        if not gone:
            continue
        times = [t for t in offered_at.get(key, []) if inside(windows.get(path, []), t)]
        explained = min(gone, len(times)) if path != "mqtt" else 0
        row["lost_in_outage"] += explained
        wiped = sum(1 for t in offered_at.get(key, []) if inside(wipes or [], t))
        wiped = min(gone - explained, wiped)
        row["lost_in_redis_wipe"] += wiped
        row["lost"] += gone - explained - wiped
        if explained:
            lost_at[key] = times
    return out, lost_at


def evidence_lost(
    lost_at: dict[str, list[float]],
    what: tuple[str, tuple[str, ...], str],
    start: float,
    end: float,
) -> bool:
    """Whether a signal of ``what`` (machine, names, subject if given) offered between
    ``start`` and ``end`` was lost in an outage window."""
    machine, names, subject = what
    for key, times in lost_at.items():
        m, name, subj = _key_parts(key)
        if m != machine or name not in names or (subject and subj != subject):
            continue
        if any(start <= t <= end for t in times):
            return True
    return False


def sort_outcome(
    outcome: Any, ledger: list[Any], lost_at: dict[str, list[float]], paths: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Take out of ``outcome`` the misses whose evidence was lost in an outage (not shown)
    and the UDP machine's counter tickets that follow a lost datagram; return both lists.
    """
    counter_kinds = {k.value for k in COUNTER_KINDS}
    down_kinds = {k.value for k in DOWN_KINDS}
    not_shown: list[dict[str, Any]] = []
    for row in list(outcome.missed):
        fault = next((f for f in ledger if f.machine == row["machine"] and f.kind == row["kind"]
                      and f.subject == row["subject"] and f.start_ts is not None
                      and row["time"] == _fault_time(f)), None)  # fmt: skip
        if fault is None or fault.start_ts is None:
            continue
        where = paths.get(fault.machine, "mqtt")
        if fault.kind in counter_kinds and where == "udp":
            names: tuple[str, ...] = ("machining_event",)
        elif fault.kind in down_kinds and where == "opcua":
            names = ("run_state",)
        else:
            continue
        subject = fault.subject if fault.kind in counter_kinds else ""
        a, b = fault.start_ts - EVIDENCE_S, fault.start_ts + EVIDENCE_S
        if evidence_lost(lost_at, (fault.machine, names, subject), a, b):
            outcome.missed.remove(row)
            not_shown.append(row | {"why": "its evidence was lost in a collector outage"})
    after_loss: list[dict[str, Any]] = []
    for row in list(outcome.false_positives):
        if paths.get(row["machine"]) != "udp":
            continue
        at = _ts(row["time"])
        what = (row["machine"], ("machining_event",), row["subject"])
        if evidence_lost(lost_at, what, at - AFTER_LOSS_S, at + EVIDENCE_S):
            outcome.false_positives.remove(row)
            after_loss.append(row | {"why": "follows a datagram lost in a collector outage"})
    return not_shown, after_loss


def _fault_time(f: Any) -> str:
    from rules.alerts import utc_iso  # noqa: PLC0415 - the matcher's own format

    return str(utc_iso(f.start_ts))


@dataclass
class Tracked:
    """A chaos event under way: when it started, when its fault ended, its checks."""

    event: ChaosEvent
    started: float
    checks: tuple[str, ...]
    since: float = 0.0  # when the fault ended (0: not yet)
    done: dict[str, float] = field(default_factory=dict)
    recovered_at: float = 0.0
    note: str = ""

    def row(self) -> dict[str, Any]:
        took = self.recovered_at - self.started if self.recovered_at else None
        return {
            **self.event.to_json(),
            "checks": list(self.checks),
            "recovery_s": round(took, 1) if took is not None else None,
            "by_check_s": {k: round(v - self.started, 1) for k, v in self.done.items()},
            "note": self.note,
        }


def _kind_key(e: ChaosEvent) -> str:
    return (
        f"kill:{e.target.rsplit('-', 1)[0] if e.target[-1].isdigit() else e.target}"
        if (e.kind == "kill")
        else e.kind
    )


class Chaos:
    """One chaos soak run."""

    def __init__(self, node: Node, minutes: float, seed: int) -> None:
        self.node = node
        self.seconds = minutes * 60.0
        self.seed = seed
        self.events = chaos_events(self.seconds, seed)
        self.tracked: list[Tracked] = []
        self.seen: Counter[str] = Counter()
        self.undecodable = 0
        self.last_id: dict[str, str] = {}
        self.entry_times: dict[str, float] = {}  # a stream's newest entry (s)
        self.delivered: dict[str, float] = {}  # the rules group's last delivered entry (s)
        self.restarts: list[tuple[float, str]] = []
        self.submits: list[dict[str, Any]] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
        self.plant_start = 0.0
        self.rss_start: dict[str, int] = {}
        self.restarted: set[str] = set()
        self.lock = threading.Lock()
        self.plex_on: dict[str, float] = {}
        self.paths = node.transports
        self.letters: list[dict[str, str]] = []  # the collector's dead letters, as read
        self.letters_id = "-"
        self.last_rts: dict[str, float] = {}  # each input's newest signal (receive time)
        self.rts: dict[str, list[float]] = {p: [] for p in PATHS}  # every receive time
        self.poison_in_streams = 0
        self.last_read = 0.0  # the harness's last complete read of the streams
        self.wiped: list[tuple[float, float]] = []

    # -- watching ----------------------------------------------------------------------

    def poll_streams(self) -> None:
        r = self.node.redis
        begun = time.time()
        for stream in self.node.streams():
            try:
                while True:
                    start = "(" + self.last_id[stream] if stream in self.last_id else "-"
                    entries: Any = r.xrange(stream, min=start, count=5000)
                    for entry_id, fields in entries:
                        self.last_id[stream] = entry_id
                        try:
                            self._saw(Signal.from_fields(fields))
                        except ValueError:
                            self.undecodable += 1
                    if entries:
                        self.entry_times[stream] = int(entries[-1][0].split("-")[0]) / 1000
                    if len(entries) < 5000:
                        break
                groups: Any = r.xinfo_groups(stream)
            except (redis.RedisError, OSError):
                return  # Redis is away: the next poll reads on from the same ids
            for g in groups:
                if g["name"] == keys.RULES_GROUP and g["last-delivered-id"] not in ("0-0", None):
                    self.delivered[stream] = int(str(g["last-delivered-id"]).split("-")[0]) / 1000
        self.last_read = begun
        self._poll_letters()

    def _saw(self, sig: Signal) -> None:
        path = path_of(self.paths, sig.machine, sig.name)
        self.last_rts[path] = max(self.last_rts.get(path, 0.0), sig.receive_ts)
        self.rts[path].append(sig.receive_ts)
        if isinstance(sig.value, str) and POISON_MARK.search(sig.value):
            self.poison_in_streams += 1
        if (path == "udp" and sig.name == "tool_change") or sig.name == HEARTBEAT_SIGNAL:
            return  # the collector makes these (run accounting, heartbeat): none offered
        self.seen[signal_key(sig)] += 1

    def _poll_letters(self) -> None:
        """Read the collector's dead letters on (a Redis restart empties the stream)."""
        try:
            while True:
                entries: Any = self.node.redis.xrange(
                    keys.COLLECTOR_DEAD_LETTERS, min=self.letters_id, count=1000
                )
                for entry_id, fields in entries:
                    self.letters_id = "(" + entry_id
                    self.letters.append(dict(fields))
                if len(entries) < 1000:
                    return
        except (redis.RedisError, OSError):
            return  # the next poll reads on

    def _check(self, t: Tracked, check: str, now: float) -> bool:  # noqa: PLR0911 - one per check
        e = t.event
        if check == "ready":
            return e.target in self.node.children.procs and http_ready(self.node.ports[e.target])
        if check == "ready_all":
            return all(
                n in self.node.children.procs and http_ready(p) for n, p in self.node.ports.items()
            )
        if check == "stream":
            # Every partition with traffic in the 30 s before the event has been read past
            # an entry written after the event ended.
            active = [s for s, at in self.entry_times.items() if at >= t.started - 30.0]
            return all(self.delivered.get(s, 0.0) >= t.since for s in active)
        if check == "outbox":
            try:
                rows = self.node.sql(
                    "SELECT count(*) FROM tickets WHERE state IN ('pending', 'sending') "
                    "AND created_at < to_timestamp(%s)",
                    t.since,
                )
            except Exception:
                return False
            return int(rows[0][0]) == 0
        if check == "filed":
            refs = {s["ref"] for s in self.submits if s["event_at"] == e.at_s}
            if not refs or "" in refs:
                return False
            try:
                plex = self.node.plex("/admin/tickets")
            except httpx.HTTPError:
                return False
            return all(any(p["external_ref"] == ref for p in plex) for ref in refs)
        raise ValueError(check)

    def watch(self, now: float) -> None:
        for t in self.tracked:
            if t.recovered_at or not t.since:
                continue
            for check in t.checks:
                if check not in t.done and self._check(t, check, now):
                    t.done[check] = time.time()
            if len(t.done) == len(t.checks):
                t.recovered_at = max(t.done.values())

    # -- acting ------------------------------------------------------------------------

    def begin(self, e: ChaosEvent) -> None:
        now = time.time()
        t = Tracked(e, now, CHECKS[_kind_key(e)])
        self.tracked.append(t)
        print(f"  chaos {e.describe()}", flush=True)
        if e.kind == "kill":
            self.node.children.kill(e.target)
            self.restarted.add(e.target)
            self.restarts.append((now + e.duration_s, e.target))
            t.since = now + e.duration_s
        elif e.kind in PLEX_FAULT:
            fault = PLEX_FAULT[e.kind]
            with self.lock:
                # Windows may overlap; the simulator's probabilities must sum to at most 1.
                rate = min(PLEX_RATE[e.kind], round(1.0 - sum(self.plex_on.values()), 3))
                self.plex_on[fault] = rate
            self.node.plex("/admin/faults", {fault: rate})
            t.since = now + e.duration_s
            if rate < PLEX_RATE[e.kind]:
                t.note = f"{fault} at {rate:g} (overlapping another Plex window)"

            def end_window() -> None:
                time.sleep(e.duration_s)  # the fault window's length, not a wait for a state
                with self.lock:
                    self.plex_on.pop(fault, None)
                self.node.plex("/admin/faults", {fault: 0.0})

            self.pool.submit(end_window)
        elif e.kind == "double_submit":
            self.pool.submit(self._double_submit, t)
        else:
            action = getattr(self.node, e.kind)
            wipe = len(self.wiped)
            if e.kind == "redis_restart_empty":
                self.wiped.append((self.last_read - 1.0, 0.0))

            def act() -> None:
                try:
                    action()
                except Exception as err:
                    t.note = f"{type(err).__name__}: {err}"
                t.since = time.time()
                if e.kind == "redis_restart_empty":
                    self.wiped[wipe] = (self.wiped[wipe][0], t.since)

            self.pool.submit(act)

    def _double_submit(self, t: Tracked) -> None:
        """The operator's form sent twice at once, then once more: one Idempotency-Key."""
        key = uuid.uuid4().hex
        body = {"machine": machine_ids(self.node.machines)[0], "category": "tool",
                "severity": "high", "badge": "1001",
                "description": f"Chaos soak double submit {key[:8]}: chipped insert."}  # fmt: skip
        headers = {"Authorization": f"Bearer {self.node.token}", "Idempotency-Key": key}

        def post() -> tuple[int, str]:
            deadline = time.monotonic() + 60
            while True:  # a client retries with the same key until the web answers
                try:
                    resp = httpx.post(f"{self.node.web_url}/api/v1/tickets", json=body,
                                      headers=headers, timeout=10)  # fmt: skip
                    if resp.status_code in (200, 201):
                        return resp.status_code, str(resp.json().get("external_ref", ""))
                    if resp.status_code < 500:
                        return resp.status_code, ""
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    return 0, ""
                time.sleep(1.0)  # the client's retry interval

        with concurrent.futures.ThreadPoolExecutor(2) as two:
            answers = list(two.map(lambda _: post(), range(2)))
        answers.append(post())
        refs = {ref for _, ref in answers}
        with self.lock:
            self.submits.append({"event_at": t.event.at_s, "key": key, "ref": refs.pop()
                                 if len(refs) == 1 else "", "answers": answers})  # fmt: skip
        if len(refs) > 1:
            t.note = f"one key, several tickets: {sorted(refs)}"
        t.since = time.time()

    # -- the run -----------------------------------------------------------------------

    def rss(self) -> dict[str, int]:
        out = {}
        for name, proc in self.node.children.procs.items():
            s = sample(proc.pid)
            if s is not None:
                out[name] = s.mem_kb
        for srv in (*self.node.sentinel.servers, self.node.mqtt):
            if srv.proc is not None:
                s = sample(srv.proc.pid)
                if s is not None:
                    out[f"{srv.name}:{srv.port}"] = s.mem_kb
        if self.node.pg.proc is not None:
            s = sample(self.node.pg.proc.pid, tree=True)
            if s is not None:
                out["postgresql"] = s.mem_kb
        return out

    def run(self) -> dict[str, Any]:
        node = self.node
        self.rss_start = self.rss()
        node.go_plant()
        self.plant_start = time.time()
        todo = list(self.events)
        while "plant" in node.children.procs and node.children.procs["plant"].poll() is None:
            now = time.time()
            while todo and now - self.plant_start >= todo[0].at_s:
                self.begin(todo.pop(0))
            for at, name in [r for r in self.restarts if r[0] <= now]:
                self.restarts.remove((at, name))
                node.children.restart(name)
            self.poll_streams()
            self.watch(now)
            self._check_children()
            time.sleep(POLL_S)  # the harness's sampling clock
        node.children.check()
        plant_end = time.time()
        self._settle(plant_end)
        return self.report(plant_end)

    def _check_children(self) -> None:
        for name, proc in self.node.children.procs.items():
            if name != "plant" and proc.poll() is not None:
                raise HarnessError(f"{name} exited with {proc.returncode} (not killed by us)")

    def _settle(self, plant_end: float) -> None:
        """Drain the streams, stop the rules, let the senders file; recoveries go on."""
        for at, name in list(self.restarts):
            self.restarts.remove((at, name))
            self.node.children.restart(name)
        deadline = time.time() + RECOVERY_BOUND_S * 2
        offered = json.loads((self.node.workdir / "offered.json").read_text())
        total = sum(offered.values())
        while time.time() < deadline:
            self.poll_streams()
            self.watch(time.time())
            caught_up = all(self.delivered.get(s, 0) >= at for s, at in self.entry_times.items())
            if sum(self.seen.values()) >= total and caught_up and self._pending() == 0:
                break
            time.sleep(0.5)  # the drain poll, bounded above
        self.rss_end = self.rss()
        self.node.children.stop([n for n in self.node.children.procs if n.startswith("rules")])
        while time.time() < deadline:
            self.watch(time.time())
            if all(t.recovered_at for t in self.tracked) and self._unfiled() == 0:
                break
            time.sleep(0.5)  # the outbox poll, bounded above
        # A late commit lands up to commit_delay_s after its request: wait it out.
        time.sleep(COMMIT_DELAY_S + 1.0)  # the simulator's fixed commit delay, not a state

    def _pending(self) -> int:
        n = 0
        for stream in self.node.streams():
            try:
                for g in self.node.redis.xinfo_groups(stream):
                    if g["name"] == keys.RULES_GROUP:
                        n += int(g["pending"])
            except (redis.RedisError, OSError):
                return -1
        return n

    def _unfiled(self) -> int:
        rows = self.node.sql("SELECT count(*) FROM tickets WHERE state IN ('pending', 'sending')")
        return int(rows[0][0])

    # -- the verdict -------------------------------------------------------------------

    def outages(self) -> dict[str, list[tuple[float, float]]]:
        """When each input had no collector: from before each kill until the restarted
        collector's first signal of that input (its /readyz, if later)."""
        out: dict[str, list[tuple[float, float]]] = {p: [] for p in PATHS}
        for t in self.tracked:
            if _kind_key(t.event) != "kill:collector":
                continue
            ready = t.done.get("ready") or t.recovered_at or time.time()
            # /readyz counts a source whose lease another process holds as taken up, and
            # the killed collector's leases hold until they expire: the new one binds the
            # UDP port and subscribes only then. A datagram sent after the bind is received,
            # so the first one received bounds the deafness (an OPC UA subscription starts
            # with every tag's value).
            for path in ("udp", "opcua"):
                first = min((x for x in self.rts[path] if x >= t.since), default=ready)
                out[path].append((t.started - OUTAGE_BEFORE_S, max(ready, first) + OUTAGE_AFTER_S))
        return out

    def wipes(self) -> list[tuple[float, float]]:
        """What a Redis restart without persistence may have taken before the harness read
        it: from a second before the harness's last read until the restart was done."""
        return [w for w in self.wiped if w[1] > 0]

    def poison_report(self, windows: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
        """Each poison found in the dead letters with its reason (module docstring)."""
        self._poll_letters()
        sent = json.loads((self.node.workdir / "poison.json").read_text())
        rows: list[dict[str, Any]] = []
        matched: set[int] = set()
        for p in sent:
            letters = poisons.found(p, self.letters)
            matched.update(id(d) for d in letters)
            reasons = sorted({d.get("reason", "") for d in letters})
            if letters:
                state = "dead_lettered" if reasons == [p["reason"]] else "wrong_reason"
            elif p["path"] != "mqtt" and inside(windows.get(p["path"], []), p["at"]):
                state = "not_received"  # UDP or OPC UA while no collector listened
            else:
                state = "missing"
            rows.append({"n": p["n"], "kind": p["kind"], "path": p["path"],
                         "at_s": round(p["at"] - self.plant_start, 1), "expected": p["reason"],
                         "reasons": reasons, "letters": len(letters), "state": state})  # fmt: skip
        last_poison: dict[str, float] = {}
        for p in sent:
            last_poison[p["path"]] = max(last_poison.get(p["path"], 0.0), p["at"])
        stopped = sorted(path for path, at in last_poison.items()
                         if self.last_rts.get(path, 0.0) <= at)  # fmt: skip
        by_kind: dict[str, Counter[str]] = {}
        for r in rows:
            by_kind.setdefault(r["kind"], Counter())[r["state"]] += 1
        states = Counter(r["state"] for r in rows)
        return {
            "sent": len(rows),
            "dead_lettered": states["dead_lettered"],
            "not_received": states["not_received"],
            "missing": states["missing"],
            "wrong_reason": states["wrong_reason"],
            "unmatched_dead_letters": sum(1 for d in self.letters if id(d) not in matched),
            "intake_stopped": stopped,
            "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "rows": rows,
        }

    def report(self, plant_end: float) -> dict[str, Any]:
        node = self.node
        ledger = read_ledger(node.workdir / "ledger.jsonl")
        rows = node.sql(
            "SELECT e.machine_id, e.rule_type, e.subject, EXTRACT(EPOCH FROM e.started_at), "
            "EXTRACT(EPOCH FROM COALESCE(t.created_at, e.created_at)), "
            "COALESCE(t.external_ref, ''), e.summary "
            "FROM episodes e LEFT JOIN tickets t ON t.episode_id = e.id ORDER BY e.id"
        )
        episodes = [Episode(str(m), str(r), str(s), float(st), float(at), str(ref), str(summ))
                    for m, r, s, st, at, ref, summ in rows]  # fmt: skip
        outcome = match(ledger, episodes, end_ts=plant_end, grace_s=GRACE_S)
        offered: Counter[str] = Counter(json.loads((node.workdir / "offered.json").read_text()))
        offered_at = json.loads((node.workdir / "offered_at.json").read_text())
        windows = self.outages()
        by_path, lost_at = losses(
            offered, self.seen, offered_at, self.paths, windows, wipes=self.wipes()
        )
        not_shown, after_loss = sort_outcome(outcome, ledger, lost_at, self.paths)
        poison = self.poison_report(windows)
        plex = node.plex("/admin/tickets")
        in_plex = Counter(p["external_ref"] for p in plex)
        tickets = node.sql("SELECT external_ref, source, state FROM tickets")
        known = {ref for ref, _, _ in tickets}
        plex_dupes = sorted(ref for ref, n in in_plex.items() if n > 1)
        not_filed = sorted(ref for ref, _, state in tickets if in_plex[ref] == 0)
        unknown = sorted(ref for ref in in_plex if ref not in known)
        lost = offered - self.seen
        extra = self.seen - offered
        rss_end = getattr(self, "rss_end", {})
        return {
            "seed": self.seed,
            "minutes": self.seconds / 60,
            "machines": node.machines,
            "faults": [f for f in (e.to_json() for e in ledger)],
            "chaos": [t.row() for t in self.tracked],
            "counts": {
                "true_positives": len(outcome.true_positives),
                "false_positives": len(outcome.false_positives),
                "missed": len(outcome.missed),
                "duplicates": len(outcome.duplicates),
                "plex_duplicates": len(plex_dupes),
                "not_filed_in_plex": len(not_filed),
                "unknown_in_plex": len(unknown),
                "operator_submits": len(self.submits),
                "operator_submits_not_once": sum(
                    1 for s in self.submits if not s["ref"] or in_plex[s["ref"]] != 1
                ),
                "not_shown_outage": len(not_shown),
                "false_after_udp_loss": len(after_loss),
                "poison_sent": poison["sent"],
                "poison_dead_lettered": poison["dead_lettered"],
                "poison_not_received": poison["not_received"],
                "poison_missing": poison["missing"],
                "poison_wrong_reason": poison["wrong_reason"],
                "poison_in_streams": self.poison_in_streams,
                "intake_stopped": len(poison["intake_stopped"]),
            },
            "transports": self.paths,
            "outage_windows": {
                path: [
                    [round(a - self.plant_start, 1), round(b - self.plant_start, 1)]
                    for a, b in spans
                ]
                for path, spans in windows.items()
                if path != "mqtt"
            },
            "not_shown_outage": not_shown,
            "false_after_udp_loss": after_loss,
            "poison": poison,
            "latency_by_kind": latency_by_kind(outcome),
            "true_positives": outcome.true_positives,
            "false_positives": outcome.false_positives,
            "missed": outcome.missed,
            "duplicates": outcome.duplicates,
            "plex_duplicates": plex_dupes,
            "not_filed_in_plex": not_filed,
            "unknown_in_plex": unknown,
            "submits": self.submits,
            "signals": {
                "offered": sum(offered.values()),
                "in_streams": sum(self.seen.values()),
                # Lost beyond the documented loss (every MQTT loss; OPC UA and UDP outside
                # an outage window); the documented loss is lost_in_outage.
                "lost": sum(r["lost"] for r in by_path.values()),
                "lost_in_outage": sum(r["lost_in_outage"] for r in by_path.values()),
                "lost_in_redis_wipe": sum(r["lost_in_redis_wipe"] for r in by_path.values()),
                "by_path": by_path,
                "redelivered": sum(extra.values()),
                "undecodable": self.undecodable,
                "lost_examples": sorted(k for k in lost if k not in lost_at)[:20],
            },
            "rss_kb": {
                n: {
                    "start": self.rss_start.get(n),
                    "end": rss_end.get(n),
                    "restarted": n in self.restarted,
                }
                for n in sorted(set(self.rss_start) | set(rss_end))
            },
        }


def failed(result: dict[str, Any]) -> list[str]:
    """Why the run failed (empty: it passed)."""
    c = result["counts"]
    why = [k for k in ("false_positives", "missed", "duplicates", "plex_duplicates",
                       "not_filed_in_plex", "unknown_in_plex", "operator_submits_not_once",
                       "poison_missing", "poison_wrong_reason", "poison_in_streams",
                       "intake_stopped", "false_after_udp_loss")
           if c.get(k)]  # fmt: skip
    if result.get("signals", {}).get("lost"):
        why.append("signals lost beyond the documented loss")
    for row in result["chaos"]:
        if row["recovery_s"] is None or row["recovery_s"] > RECOVERY_BOUND_S:
            what = f"{row['kind']} {row['target']}".strip()
            why.append(f"not recovered within {RECOVERY_BOUND_S:g} s: {what}")
    return why


def table(result: dict[str, Any]) -> str:
    """The result as the terminal table."""
    c, sig = result["counts"], result["signals"]
    lines = [
        f"chaos soak: {result['machines']} machines, {result['minutes']:g} min, "
        f"seed {result['seed']}, {len(result['chaos'])} chaos events",
        "",
        *[f"{k.replace('_', ' '):<28}{v:>6}" for k, v in c.items()],
        "",
        f"{'fault kind':<24}{'detected':>9}{'p50 s':>9}{'p99 s':>9}",
    ]
    for kind, lat in result["latency_by_kind"].items():
        lines.append(f"{kind:<24}{lat['n']:>9}{lat['p50_s']:>9.1f}{lat['p99_s']:>9.1f}")
    lines += ["", f"{'chaos event':<40}{'recovered s':>12}  checks"]
    for row in result["chaos"]:
        what = f"t+{row['at_s']:.0f} {row['kind']} {row['target']}".strip()
        rec = "NO" if row["recovery_s"] is None else f"{row['recovery_s']:.1f}"
        checks = ", ".join(f"{k} {v:g}" for k, v in row["by_check_s"].items())
        lines.append(f"{what:<40}{rec:>12}  {checks} {row['note']}".rstrip())
    lines += [
        "",
        f"signals offered {sig['offered']}, in the streams {sig['in_streams']}, lost "
        f"{sig['lost']}, lost in outages {sig['lost_in_outage']}, lost in a Redis wipe "
        f"{sig['lost_in_redis_wipe']}, redelivered (at least once) {sig['redelivered']}",
        "",
        f"{'input':<8}{'machines':>9}{'offered':>9}{'in streams':>11}{'lost in outage':>15}"
        f"{'in wipe':>8}{'lost':>6}{'redelivered':>12}",
    ]
    for path, row in sig["by_path"].items():
        n = sum(1 for p in result["transports"].values() if p == path)
        lines.append(
            f"{path:<8}{n:>9}{row['offered']:>9}{row['in_streams']:>11}"
            f"{row['lost_in_outage']:>15}{row['lost_in_redis_wipe']:>8}{row['lost']:>6}"
            f"{row['redelivered']:>12}"
        )
    windows = "; ".join(
        f"{path} " + ", ".join(f"t+{a:g}..{b:g}" for a, b in spans)
        for path, spans in result["outage_windows"].items()
        if spans
    )
    lines += [f"collector outage windows (s): {windows or 'none'}", ""]
    poison = result["poison"]
    lines.append(f"{'poison kind':<22}{'sent':>5}  states (expected reason)")
    for kind, states in poison["by_kind"].items():
        expected = next(r["expected"] for r in poison["rows"] if r["kind"] == kind)
        text = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
        lines.append(f"{kind:<22}{sum(states.values()):>5}  {text} ({expected})")
    lines += [
        f"dead letters not from a poison: {poison['unmatched_dead_letters']}; inputs "
        f"silent after their last poison: {', '.join(poison['intake_stopped']) or 'none'}",
        "",
        f"{'process':<22}{'RSS start MiB':>14}{'end MiB':>9}",
    ]
    for name, m in result["rss_kb"].items():
        start = f"{m['start'] / 1024:.0f}" if m["start"] else "-"
        end = f"{m['end'] / 1024:.0f}" if m["end"] else "-"
        mark = " (restarted)" if m["restarted"] else ""
        lines.append(f"{name:<22}{start:>14}{end:>9}{mark}")
    for title in ("false_positives", "missed", "duplicates", "not_shown_outage",
                  "false_after_udp_loss"):  # fmt: skip
        for r in result[title][:20]:
            lines.append(f"{title}: {r['time']} {r['machine']} {r['rule']} {r['subject']} "
                         f"{r.get('summary', r.get('kind', ''))}")  # fmt: skip
    return "\n".join(lines)


def plan(minutes: float, seed: int, machines: int) -> str:
    """The seeded plans, printed before the run (the seed repeats them)."""
    lines = [f"chaos soak plan, seed {seed}: plant faults"]
    for f in plant_scenario(machine_ids(machines), minutes * 60.0, seed).faults:
        lines.append(f"  t+{f.at_s:6.1f} s  {f.machine} {f.kind.value} {f.tool}")
    paths = transports(machine_ids(machines), minutes * 60.0, seed)
    lines.append("inputs: " + ", ".join(f"{m} {p}" for m, p in paths.items() if p != "mqtt")
                 + " (the others mqtt)")  # fmt: skip
    lines.append("chaos events")
    lines += [f"  {e.describe()}" for e in chaos_events(minutes * 60.0, seed)]
    return "\n".join(lines)


def run_chaos(minutes: float, seed: int, machines: int, workdir: str = "") -> dict[str, Any]:
    """Start the node, run the soak, stop everything; the result (see :func:`table`)."""
    print(plan(minutes, seed, machines), flush=True)
    with tempfile.TemporaryDirectory(prefix="repsys-chaos-") as tmp:
        seconds = minutes * 60.0
        paths = transports(machine_ids(machines), seconds, seed)
        node = Node(Path(workdir or tmp), machines, paths)
        try:
            started = time.monotonic()
            node.start_servers()
            node.start_processes(plant=(seconds, seed))
            print(f"node ready in {time.monotonic() - started:.0f} s: "
                  f"{', '.join(COMMANDS)}", flush=True)  # fmt: skip
            result = Chaos(node, minutes, seed).run()
            result["wall_s"] = round(time.monotonic() - started, 1)
            return result
        finally:
            node.stop()
