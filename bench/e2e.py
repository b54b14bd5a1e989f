"""End to end on one node: the simulated plant through every process, as separate OS processes.

``python -m bench.e2e --machines 1000 --rate-per-machine 20 --minutes 10`` (the defaults:
issue 23's figures) starts, in a temporary folder:

* a private **redis-server**, **mosquitto** and **PostgreSQL** (``track_commit_timestamp``
  on). PostgreSQL rather than the embedded SQLite file: two rules workers and the sender
  write the same tables at once, which is PostgreSQL's job in production (SQLite
  serializes writers on a file lock); its CPU is a process of its own, readable from
  ``/proc``; and it records when each transaction committed, which is the honest end of
  the latency (below);
* ``repsys sim plex`` (the simulated Plex over HTTP), ``repsys collector`` (one MQTT
  source), ``--workers`` x ``repsys rules`` and ``repsys plex-sender``, each
  ``python -m repsys -c CONFIG …`` as in the demo;
* the plant (``bench/_e2e_plant.py``): the simulated plant's MQTT formats for every
  machine, topped up with 1 Hz telemetry to ``--rate-per-machine``, and probes.

**Latency, measured in the rows.** A probe is an early tool change published with the
wall clock as its source time; ``tool_life_short`` opens an episode whose ``started_at``
is that time, and writes its ticket in the same transaction. Signal → episode is the
episode row's ``created_at`` (the worker built it) minus ``started_at``; signal →
committed ticket row is the commit time of the transaction that inserted the ticket's
``created`` event (``pg_xact_commit_timestamp(xmin)``: that row is never updated, unlike
the ticket, which the sender updates) minus ``started_at``; signal → filed in Plex is the
ticket's ``filed_at`` minus ``started_at`` (bounded by Plex's 200 calls a minute). One
clock, one machine: no skew. ``rules.group_wait_s`` is 0 (a ticket per episode at once):
the figure is the machinery's, not the grouping window a plant may configure.

**Cost.** CPU seconds per 1,000 signals of each process over the measured window (after
``--warmup-s``, to the drain), and resident memory at the window's start and end, from
``/proc`` (``bench/_e2e_proc.py``); Redis memory per machine-hour from ``used_memory``
(the streams are sized not to trim during the run). Then, on the same redis-server, the
bare pipeline (``bench/_e2e_base.py``: XADD → XREADGROUP → XACK of the run's own entries
at the same offered rate, ``--baseline-s``) and the ratio of CPU per signal.

**Robust.** Every child is in a session of its own and gets SIGTERM when this process
dies (``PR_SET_PDEATHSIG``); Ctrl-C or SIGTERM stops them all, then the servers. When a
stage falls behind (more than ``--max-backlog-s`` of load waiting before the collector
or before the rules) or a process exits, the run stops with a message naming the stage.

``--scale-out`` adds the drain of a preloaded backlog by one rules worker, then by two
over the same partitions (``bench/_e2e_scale.py``). ``make bench`` runs ``main()`` with
two minutes (see ``SHORT_MINUTES``); ``make bench-e2e`` runs the full ten.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis
import yaml

from bench import _e2e_base
from bench._e2e_plant import telemetry_values
from bench.rules import RULES
from core import keys
from core.config import parse_config
from repsys.harness import Children, HarnessError, http_ready
from repsys.procstat import Sample, sample
from repsys.servers import MosquittoServer, PostgresServer, RedisServer, free_port, port_open

#: ``make bench`` (``python -m bench``) runs this many minutes: the ten of the full run
#: would make the whole suite take a quarter of an hour.
SHORT_MINUTES = 2.0
PARTITIONS = 8
PASSWORD_ENV = "REPSYS_BENCH_PLEX_PASSWORD"
SAMPLE_S = 5.0


#: A stage could not keep up (its backlog grew past the bound) or a process exited.
StageBehindError = HarnessError


class _Postgres(PostgresServer):
    """The private PostgreSQL with commit timestamps: the latency's honest end."""

    def _argv(self) -> list[str]:
        return [*super()._argv(), "-c", "track_commit_timestamp=on"]


class _Mosquitto(MosquittoServer):
    """The plant's broker as a plant runs it: persistence on, saved every ``autosave_s``.

    The test broker saves its whole persistence file every second (tests restart it and
    want the sessions back); mosquitto does that on its one thread, with every queued
    QoS 1 message in it, and messages wait meanwhile. A plant's broker keeps mosquitto's
    default (1,800 s) or its own: the bench measures RepSys, not the bench's broker.
    """

    def __init__(self, workdir: Path, autosave_s: int) -> None:
        super().__init__(workdir)
        self.autosave_s = autosave_s

    def _argv(self) -> list[str]:
        argv = super()._argv()
        conf = Path(argv[-1])
        lines = conf.read_text().splitlines()
        lines = [f"autosave_interval {self.autosave_s}" if line.startswith("autosave_interval")
                 else line for line in lines]  # fmt: skip
        conf.write_text("\n".join([*lines, ""]))
        return argv


def _machines(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"m{i:04d}",
            "pcn": 123681,
            "workcenter_key": 60000 + i,
            "workcenter_code": f"m{i:04d}",
        }
        for i in range(n)
    ]


def write_config(path: Path, args: argparse.Namespace, urls: dict[str, Any]) -> None:
    total = args.machines * args.rate_per_machine * (args.minutes * 60 + 120)
    config: dict[str, Any] = {
        "machines": _machines(args.machines),
        "redis": {"url": urls["redis"]},
        "database": {"url": urls["db"], "pool_size": 5},
        "logging": {"format": "json", "level": "WARNING"},
        # Sized not to trim during the run: Redis memory per machine-hour is read from it.
        "streams": {"partitions": PARTITIONS, "max_len": max(1000, int(total / PARTITIONS * 1.2))},
        "collector": {"sources": [{
            "type": "mqtt", "name": "plant", "port": urls["mqtt"], "qos": 1,
            "client_id": "bench-e2e-collector",
            "topics": [
                {"pattern": "focas/+", "machine_field": "WorkCenter",
                 "timestamp_field": "TransDate",
                 "fields": [{"path": "Cycle_Counter_Shift_SL", "signal": "part_count",
                             "type": "int"}]},
                {"pattern": "InsAssemblyMachiningHistory", "machine_field": "Workcenter_Key",
                 "timestamp_field": "End_Time",
                 "fields": [{"path": "Current_Value", "signal": "machining_event", "type": "int",
                             "subject": "T{Tool_Var}",
                             "attrs": {"pallet": "{Pallet_No}", "tool": "T{Tool_Var}",
                                       "counter": "{Current_Value}"}}]},
                {"pattern": "InsToolLifeHistoryV2", "machine_field": "Workcenter_Key",
                 "timestamp_field": "Run_Date",
                 "fields": [{"path": "Run_Quantity", "signal": "tool_change", "type": "int",
                             "subject": "T{Tool_Var}"}]},
                {"pattern": "plant/{pcn}/{machine}/{signal}", "format": "value"},
                {"pattern": "telemetry/{machine}", "timestamp_field": "ts",
                 "timestamp_format": "epoch_s",
                 "fields": [{"path": f"tel{j}", "signal": f"tel{j}", "type": "float"}
                            for j in range(urls["telemetry_values"])] or [{}]},
                {"pattern": "probe/{machine}", "timestamp_field": "ts",
                 "timestamp_format": "epoch_s",
                 "fields": [{"path": "value", "signal": "tool_life", "type": "int",
                             "subject": "T{tool}", "attrs": {"limit": "{limit}"}}]},
            ],
        }]},
        "plex": {
            "environment": "simulator",
            "endpoint": f"http://127.0.0.1:{urls['plex']}/DataSource/Service.asmx",
            "username": "RepsysWs@plex.com",  # the simulator's account
            "password": {"env": PASSWORD_ENV},
            "master_data_check": "warning",
            "sender": {"poll_interval_s": 0.2},
        },
        "sim": {"plant": {"mqtt": {"port": urls["mqtt"], "client_id": "bench-e2e-plant"}},
                "plex": {"port": urls["plex"], "password": {"env": PASSWORD_ENV}}},
        "rules": {"group_wait_s": 0, "rules": RULES},
    }  # fmt: skip
    for item in args.set:
        # A plant's own settings to measure with, e.g. rules.worker.checkpoint_interval_s=5.
        dotted, _, raw = item.partition("=")
        *parents, leaf = dotted.split(".")
        node: Any = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(raw)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    # --collectors N: the topics split over N sources, each in a configuration of its own
    # (collector name c<i>). Replicas of one configuration only fail over (decision 0142):
    # spreading the load means splitting the sources.
    topics = config["collector"]["sources"][0]["topics"]
    for i in range(args.collectors if args.collectors > 1 else 0):
        part = dict(config)
        source = {
            **config["collector"]["sources"][0],
            "name": f"plant{i}",
            "client_id": f"bench-e2e-collector-{i}",
            "topics": topics[i :: args.collectors],
        }
        part["collector"] = {**config["collector"], "name": f"c{i}", "sources": [source]}
        path.with_name(f"collector-{i}.yaml").write_text(yaml.safe_dump(part, sort_keys=False))


@dataclass
class Reading:
    """One sample of the whole node."""

    t: float
    plant: dict[str, Any]
    added: int  # entries the collector wrote into the streams
    read: int  # entries the rules group has read
    pending: int  # read but not yet acknowledged (checkpointed)
    used_memory: int
    procs: dict[str, Sample | None]


def _streams(r: redis.Redis) -> tuple[int, int, int]:
    added = read = pending = 0
    for p in range(PARTITIONS):
        name = keys.signal_stream(p)
        if not r.exists(name):
            continue
        info: Any = r.xinfo_stream(name)
        added += int(info["entries-added"])
        groups: Any = r.xinfo_groups(name)
        for g in groups:
            if g["name"] == keys.RULES_GROUP:
                read += int(g["entries-read"] or 0)
                pending += int(g["pending"])
    return added, read, pending


class Node:
    """The servers and processes of one end-to-end run, and its readings."""

    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.redis_srv = RedisServer(workdir / "redis")
        self.mqtt = _Mosquitto(workdir / "mosquitto", args.broker_autosave_s)
        self.pg = _Postgres(workdir / "pg")
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.children = Children(workdir / "logs")
        self.config = workdir / "repsys.yaml"
        self.status = workdir / "plant.json"
        # Every child reads the config, which names the variable: set it here for all.
        os.environ.setdefault(PASSWORD_ENV, "bench-e2e-secret")
        self.env = {PASSWORD_ENV: os.environ[PASSWORD_ENV]}
        self.ports: dict[str, int] = {}
        self.db_url = ""

    def start_servers(self) -> None:
        for srv in (self.redis_srv, self.mqtt, self.pg):
            srv.start(timeout=120)
        self.db_url = self.pg.create_database("repsys")
        self.redis = redis.Redis.from_url(self.redis_srv.url, decode_responses=True)

    def stop(self) -> None:
        self.children.stop()
        self.pg.cleanup()  # its folder is outside ours (initdb runs as nobody under root)
        for srv in (self.mqtt, self.redis_srv):
            srv.stop()

    def repsys(self, *argv: str, port: int | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "repsys", "-c", str(self.config)]
        return [*cmd, *(["--http-port", str(port)] if port else []), *argv]

    def write_config(self, telemetry_values: int) -> int:
        """Write the run's configuration and migrate its database; the simulated Plex's port."""
        plex = free_port()
        urls = {"redis": self.redis_srv.url, "db": self.db_url, "mqtt": self.mqtt.port,
                "plex": plex, "telemetry_values": telemetry_values}  # fmt: skip
        write_config(self.config, self.args, urls)
        subprocess.run(self.repsys("db", "upgrade"), check=True, stdout=subprocess.DEVNULL)
        return plex

    def start_pipeline(self, telemetry_values: int) -> None:
        plex = self.write_config(telemetry_values)
        self.children.start("sim-plex", self.repsys("sim", "plex"), self.env)
        for i in range(self.args.collectors if self.args.collectors > 1 else 0):
            self.ports[f"collector-{i + 1}"] = port = free_port()
            cfg = str(self.config.with_name(f"collector-{i}.yaml"))
            argv = [*self.repsys()[:4], cfg, "--http-port", str(port), "collector"]
            self.children.start(f"collector-{i + 1}", argv, self.env)
        names = ["collector"] if self.args.collectors <= 1 else []
        names += [f"rules-{w + 1}" for w in range(self.args.workers)]
        for name in [*names, "plex-sender"]:
            self.ports[name] = free_port()
            cmd = name.split("-")[0] if name.startswith("rules") else name
            self.children.start(name, self.repsys(cmd, port=self.ports[name]), self.env)
        deadline = time.monotonic() + 120
        for name, port in [*self.ports.items(), ("sim-plex", plex)]:
            while not self._ready(name, port):
                self.children.check()
                if time.monotonic() > deadline:
                    raise StageBehindError(f"{name} not ready after 120 s")
                time.sleep(0.2)  # start-up poll with a deadline

    @staticmethod
    def _ready(name: str, port: int) -> bool:
        return port_open(port) if name == "sim-plex" else http_ready(port)

    def pids(self) -> dict[str, tuple[int, bool]]:
        out = {name: (p.pid, False) for name, p in self.children.procs.items()}
        assert self.redis_srv.proc is not None and self.pg.proc is not None
        assert self.mqtt.proc is not None
        out["redis-server"] = (self.redis_srv.proc.pid, False)
        out["postgresql"] = (self.pg.proc.pid, True)
        out["mosquitto"] = (self.mqtt.proc.pid, False)
        return out

    def read(self) -> Reading:
        try:
            plant = json.loads(self.status.read_text())
        except (OSError, ValueError):
            plant = {"signals": 0}
        added, read, pending = _streams(self.redis)
        mem: Any = self.redis.info("memory")
        procs = {n: sample(pid, tree=tree) for n, (pid, tree) in self.pids().items()}
        return Reading(time.monotonic(), plant, added, read, pending,
                       int(mem["used_memory"]), procs)  # fmt: skip


def _check_backlog(r: Reading, rate: float, limit_s: float) -> None:
    before_collector = int(r.plant.get("signals", 0)) - r.added
    before_rules = r.added - r.read + r.pending
    bound = rate * limit_s
    if float(r.plant.get("behind_s", 0.0)) > limit_s:
        raise StageBehindError(
            f"the plant simulator runs {r.plant['behind_s']:.0f} s behind its schedule: this "
            "machine cannot even offer the load (lower --machines or --rate-per-machine)"
        )
    if before_collector > bound:
        raise StageBehindError(
            f"the collector fell behind: {before_collector:,} signals published but not in "
            f"the streams (more than {limit_s:g} s of load)"
        )
    if before_rules > bound:
        raise StageBehindError(
            f"the rules workers fell behind: {before_rules:,} signals in the streams not yet "
            f"checkpointed (more than {limit_s:g} s of load)"
        )


def run_load(node: Node, args: argparse.Namespace) -> tuple[Reading, Reading, Reading]:
    """Publish for the run's duration; readings at the warm-up's end, the end, the drain."""
    seconds = args.minutes * 60
    rate = args.machines * args.rate_per_machine
    plant_argv = [sys.executable, "-m", "bench._e2e_plant", str(node.config), str(node.status),
                  str(seconds), str(args.rate_per_machine), str(args.probes_per_s)]  # fmt: skip
    node.children.start("plant", plant_argv)
    started = time.monotonic()
    first: Reading | None = None
    last = node.read()
    while "plant" in node.children.procs and node.children.procs["plant"].poll() is None:
        node.children.check()
        time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - last.t)))  # the sampling clock
        last = node.read()
        _check_backlog(last, rate, args.max_backlog_s)
        if first is None and last.t - started >= args.warmup_s:
            first = last
        done = int((last.t - started) / 60)
        if done and int((last.t - SAMPLE_S - started) / 60) < done:
            print(f"  {done} min: {last.added:,} signals in the streams, {last.read:,} read by "
                  f"the rules", flush=True)  # fmt: skip
    node.children.check()
    node.children.procs.pop("plant")
    end = node.read()
    if first is None:
        raise StageBehindError("the run was shorter than its warm-up: raise --minutes")
    deadline = time.monotonic() + args.max_backlog_s * 2 + 30
    drained = end
    while (
        drained.added < int(drained.plant["signals"])
        or drained.read < drained.added
        or (drained.pending)
    ):
        node.children.check()
        if time.monotonic() > deadline:
            raise StageBehindError(
                f"the pipeline did not drain after the plant stopped: {drained.plant['signals']:,}"
                f" offered, {drained.added:,} in the streams, {drained.read:,} read, "
                f"{drained.pending:,} not checkpointed"
            )
        time.sleep(0.5)  # the drain poll, bounded above
        drained = node.read()
    return first, end, drained


def latencies(db_url: str, r: Any) -> dict[str, list[float]]:
    """Probe latencies from the rows (module docstring), in seconds, and their hops.

    The episode and its ticket are committed in one transaction, so signal -> episode
    and signal -> ticket row are one figure (the episode's ``created_at`` is the engine's
    clock, the newest receive time it had seen, not when it decided: not a latency). The
    hops come from the probe's own stream entry, found between its source time and the
    commit: ``rts`` (the collector received it) and the entry id (the redis-server's
    clock at the XADD, in ms) split it into plant -> broker -> collector, collector ->
    XADD, and XADD -> committed (the rules worker and PostgreSQL).
    """
    query = """
        SELECT EXTRACT(EPOCH FROM pg_xact_commit_timestamp(ev.xmin) - e.started_at),
               EXTRACT(EPOCH FROM t.filed_at - e.started_at),
               e.machine_id, e.subject, EXTRACT(EPOCH FROM e.started_at)
        FROM episodes e
        JOIN tickets t ON t.episode_id = e.id
        JOIN ticket_events ev ON ev.ticket_id = t.id AND ev.event = 'created'
        WHERE e.rule = 'tool_life_short' AND e.subject LIKE 'T9%%'
    """
    url = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        rows = conn.execute(query).fetchall()
    mqtt, sink, rules = (
        "  hop: plant -> broker -> collector",
        "  hop: collector -> XADD",
        ("  hop: XADD -> episode + ticket committed (rules, PostgreSQL)"),
    )
    hops: dict[str, list[float]] = {mqtt: [], sink: [], rules: []}
    for committed, _, machine, subject, started in rows:
        ts, done = float(started), float(started) + float(committed)
        stream = keys.signal_stream(keys.partition_of(machine, PARTITIONS))
        for entry_id, f in r.xrange(stream, min=str(int(ts * 1000)), max=str(int(done * 1000) + 1)):
            if f.get("m") == machine and f.get("s") == subject and f.get("x") == "0":
                xadd = int(entry_id.split("-")[0]) / 1000
                hops[mqtt].append(float(f["rts"]) - ts)
                hops[sink].append(xadd - float(f["rts"]))
                hops[rules].append(done - xadd)
                break
    return {
        "signal -> episode + ticket row committed (one transaction)": [float(r[0]) for r in rows],
        **hops,
        "signal -> filed in Plex": [float(r[1]) for r in rows if r[1] is not None],
    }


def _quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"{len(values)} samples"
    if min(values) < 0.0:  # a hop shorter than the XADD id's millisecond
        values = [max(0.0, v) for v in values]
    p99 = statistics.quantiles(values, n=100)[98]
    return (f"p50 {statistics.median(values) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {max(values) * 1000:.1f} ms ({len(values)} probes)")  # fmt: skip


def _cpu(a: Reading, b: Reading, name: str) -> float:
    sa, sb = a.procs.get(name), b.procs.get(name)
    return sb.cpu_s - sa.cpu_s if sa and sb else float("nan")


def report(args: argparse.Namespace, first: Reading, end: Reading, drained: Reading) -> float:
    """Print the figures; return RepSys's CPU seconds per 1,000 signals (for the ratio)."""
    window = end.t - first.t
    signals = drained.added - first.added
    offered = int(end.plant["signals"]) - int(first.plant.get("signals", 0))
    print(f"sustained over {window:.0f} s after a {args.warmup_s:.0f} s warm-up: offered "
          f"{offered / window:,.0f} signals/s, into the streams "
          f"{(end.added - first.added) / window:,.0f}/s, "
          f"read by the rules {(end.read - first.read) / window:,.0f}/s; drained "
          f"{drained.t - end.t:.1f} s after the plant stopped "
          f"({end.plant.get('telemetry_values')} telemetry values a machine-second beside the "
          f"plant's {end.plant.get('plant_rate', 0):.2f})", flush=True)  # fmt: skip
    print("CPU seconds per 1,000 signals, resident memory at the window's start -> end:")
    repsys_cpu = 0.0
    for name in first.procs:
        if name == "plant":
            continue  # the load generator: its own line below
        cpu = _cpu(first, drained, name)
        s0, s1 = first.procs[name], end.procs.get(name)
        mem = f"{s0.mem_kb / 1024:.0f} -> {s1.mem_kb / 1024:.0f} MiB" if s0 and s1 else "?"
        growth = f" ({(s1.mem_kb / s0.mem_kb - 1) * 100:+.0f} %)" if s0 and s1 and s0.mem_kb else ""
        kind = "PSS of the tree" if name == "postgresql" else "RSS"
        print(f"  {name:<14} {cpu / signals * 1000:7.3f} s  {mem}{growth} {kind}")
        if name not in ("mosquitto", "sim-plex") and cpu == cpu:
            repsys_cpu += cpu
    plant_cpu = float(drained.plant["cpu_s"]) - float(first.plant.get("cpu_s", 0.0))
    print(
        f"  {'plant (sim)':<14} {plant_cpu / signals * 1000:7.3f} s  (the load generator, "
        "not RepSys)"
    )
    repsys_per_k = repsys_cpu / signals * 1000
    print(f"  RepSys total (collector, rules, sender, redis-server, PostgreSQL) {repsys_per_k:.3f} "
          f"s per 1,000 signals = {1000 / repsys_per_k:,.0f} signals/s per core")  # fmt: skip
    hours = window / 3600
    per_mh = (end.used_memory - first.used_memory) / args.machines / hours
    per_entry = (end.used_memory - first.used_memory) / max(1, end.added - first.added)
    print(
        f"Redis memory: {per_mh / 2**20:.1f} MiB per machine-hour at "
        f"{args.rate_per_machine:g} signals/s ({per_entry:.0f} bytes per stream entry); "
        f"used_memory {first.used_memory / 2**20:.0f} -> {end.used_memory / 2**20:.0f} MiB"
    )
    return repsys_per_k


def baseline(node: Node, args: argparse.Namespace, repsys_per_k: float) -> None:
    """The bare pipeline at the same offered rate on the same redis-server (module docstring)."""
    pipeline = ("collector", "rules", "plex-sender")
    node.children.stop([n for n in node.children.procs if n.startswith(pipeline)])
    r: Any = node.redis
    pipe = r.pipeline(transaction=False)
    for p in range(PARTITIONS):
        for _id, fields in r.xrange(keys.signal_stream(p), count=2500):
            pipe.xadd(_e2e_base.SAMPLE_KEY, fields)
    pipe.execute()
    r.delete(*[keys.signal_stream(p) for p in range(PARTITIONS)])  # memory back, same server
    rate = args.machines * args.rate_per_machine
    maxlen = max(1000, int(rate * args.baseline_s / PARTITIONS * 1.2))
    mod = [sys.executable, "-m", "bench._e2e_base"]
    node.children.start("bare-consumer", [*mod, "consume", node.redis_srv.url, str(PARTITIONS)])
    produce = [*mod, "produce", node.redis_srv.url, str(rate), str(args.baseline_s + 10)]
    node.children.start("bare-producer", [*produce, str(PARTITIONS), str(maxlen)])

    def counts() -> tuple[int, dict[str, Sample | None]]:
        n = 0
        for p in range(PARTITIONS):
            if r.exists(_e2e_base.stream(p)):
                for g in r.xinfo_groups(_e2e_base.stream(p)):
                    n += int(g["entries-read"] or 0)
        assert node.redis_srv.proc is not None
        procs = {n: sample(p.pid) for n, p in node.children.procs.items() if n.startswith("bare")}
        procs["redis-server"] = sample(node.redis_srv.proc.pid)
        return n, procs

    time.sleep(5)  # warm-up of the bare pipeline: a measured window follows, not a condition
    n0, p0 = counts()
    t0 = time.monotonic()
    time.sleep(args.baseline_s)  # the measured window
    n1, p1 = counts()
    t1 = time.monotonic()
    node.children.stop(["bare-producer", "bare-consumer"])
    if n1 <= n0:
        raise StageBehindError("the bare pipeline consumed nothing")
    total = 0.0
    parts = []
    for name in p0:
        a, b = p0[name], p1[name]
        if a and b:
            total += b.cpu_s - a.cpu_s
            parts.append(f"{name} {(b.cpu_s - a.cpu_s) / (n1 - n0) * 1000:.3f} s")
    base_per_k = total / (n1 - n0) * 1000
    print(f"bare pipeline (XADD -> XREADGROUP -> XACK, no work) at {rate:,} signals/s offered: "
          f"{(n1 - n0) / (t1 - t0):,.0f}/s consumed; CPU per 1,000 signals {base_per_k:.3f} s "
          f"({', '.join(parts)})", flush=True)  # fmt: skip
    print(
        f"ratio of CPU per signal, RepSys end to end / bare pipeline: "
        f"{repsys_per_k / base_per_k:.1f}",
        flush=True,
    )


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n")[0])
    p.add_argument("--machines", type=int, default=1000)
    p.add_argument("--rate-per-machine", type=float, default=20.0, help="signals/s a machine")
    p.add_argument("--minutes", type=float, default=10.0, help="how long the plant publishes")
    p.add_argument("--workers", type=int, default=2, help="rules worker processes")
    p.add_argument(
        "--collectors", type=int, default=1, help="collector processes, the topics split over them"
    )
    p.add_argument("--probes-per-s", type=float, default=2.0, help="latency probes a second")
    p.add_argument("--warmup-s", type=float, default=30.0, help="left out of the figures")
    p.add_argument(
        "--max-backlog-s",
        type=float,
        default=30.0,
        help="fail when a stage has more than this many seconds of load waiting",
    )
    p.add_argument(
        "--broker-autosave-s",
        type=int,
        default=1800,
        help="the bench broker's autosave_interval (mosquitto's default; the tests' is 1)",
    )
    p.add_argument("--baseline-s", type=float, default=60.0, help="bare pipeline's window")
    p.add_argument("--no-baseline", action="store_true", help="skip the bare pipeline")
    p.add_argument(
        "--scale-out",
        action="store_true",
        help="also drain a backlog with one rules worker, then two",
    )
    p.add_argument(
        "--scale-out-signals",
        type=int,
        default=2_400_000,
        help="backlog of the scale-out drains (long enough for a steady window)",
    )
    p.add_argument(
        "--scale-out-only",
        action="store_true",
        help="only the scale-out drains (no plant, collector or sender): Redis, PostgreSQL "
        "and the rules workers alone on the cores",
    )
    p.add_argument("--workdir", default="", help="keep servers' files and logs here")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config value by its dotted path (YAML value), e.g. "
        "rules.worker.checkpoint_interval_s=5; repeatable",
    )
    return p.parse_args(argv)  # fmt: skip


def run(args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rate = args.machines * args.rate_per_machine
    print(f"end to end: {args.machines:,} machines x {args.rate_per_machine:g} signals/s = "
          f"{rate:,.0f} signals/s offered for {args.minutes:g} min, {args.workers} rules "
          f"workers, {PARTITIONS} partitions; {os.cpu_count()} cores, load average {load}",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="repsys-bench-e2e-") as tmp:
        node = Node(Path(args.workdir or tmp), args)
        try:
            node.start_servers()
            machines = parse_config({"machines": _machines(args.machines)})
            if args.scale_out_only:
                from bench._e2e_scale import scale_out  # noqa: PLC0415

                node.write_config(telemetry_values(args.rate_per_machine, machines))
                scale_out(node, args)
                return
            node.start_pipeline(telemetry_values(args.rate_per_machine, machines))
            first, end, drained = run_load(node, args)
            lat = latencies(node.db_url, node.redis)
            for name, values in lat.items():
                print(f"{name}: {_quantiles(values)}", flush=True)
            repsys_per_k = report(args, first, end, drained)
            if not args.no_baseline:
                baseline(node, args, repsys_per_k)
            if args.scale_out:
                from bench._e2e_scale import scale_out  # noqa: PLC0415

                scale_out(node, args)
        finally:
            node.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.e2e [options]``; from ``python -m bench``: ``SHORT_MINUTES``."""
    if argv is None:
        print(f"(make bench: {SHORT_MINUTES:g} minutes; the full run is python -m bench.e2e, "
              "or make bench-e2e)", flush=True)  # fmt: skip
        argv = ["--minutes", str(SHORT_MINUTES), "--scale-out"]
    args = parse(argv)

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through every finally: children, then servers

    signal.signal(signal.SIGTERM, on_term)
    try:
        run(args)
    except StageBehindError as err:
        print(f"bench.e2e: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("bench.e2e: interrupted; every process it started is stopped", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main(sys.argv[1:])
