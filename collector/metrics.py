"""The collector's own metrics, on an injected registry.

Labels are bounded: ``reader`` is ``opcua`` or ``mqtt``, ``source`` a configured source
name, ``machine`` a configured machine id, ``reason`` a fixed word from
:mod:`collector.errors`. Node ids and topics never become labels.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class SignalTally:
    """A counter by ``(reader, machine)`` for the sink's hot path: a dict, read at scrape.

    A prometheus ``Counter`` child takes a lock and several Python calls per ``inc``;
    at tens of thousands of messages a second from a hundred machines that was a good
    part of the sink's cost per message. The sink adds to :attr:`counts` itself, from
    one serialised place per tally (the received and dropped counts under the sink's
    lock, the written counts in its writer thread), and the registry reads a copy
    (``dict.copy`` is atomic under the GIL). The exposition is a plain counter family.
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        #: (reader, machine) -> signals; written only by the owner named in the docstring.
        self.counts: dict[tuple[str, str], float] = {}
        registry.register(self)

    def add(self, reader: str, machine: str, n: float) -> None:
        key = (reader, machine)
        self.counts[key] = self.counts.get(key, 0) + n

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=["reader", "machine"])

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["reader", "machine"])
        for (reader, machine), value in self.counts.copy().items():
            family.add_metric([reader, machine], value)
        yield family


class SourceActivity:
    """Unix time of each source's last message (or subscription), read at scrape.

    A reader can stay connected and receive nothing (a callback thread that died, a
    publisher that stopped, a subscription the server dropped): ``source_connected``
    then still says 1. The alert on a stalled intake compares this time with the clock.
    Like :class:`SignalTally` it is a plain dict on the hot path, one store per message.
    """

    name = "repsys_collector_source_last_message_seconds"
    documentation = (
        "Unix time of the last message from a source, or of its last subscription "
        "(alerts on intake that stalls while the source says connected)."
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        #: (reader, source) -> unix time; a reader writes only its own key.
        self.last: dict[tuple[str, str], float] = {}
        registry.register(self)

    def seen(self, reader: str, source: str, ts: float) -> None:
        self.last[(reader, source)] = ts

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["reader", "source"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["reader", "source"])
        for (reader, source), ts in self.last.copy().items():
            family.add_metric([reader, source], ts)
        yield family


class CollectorMetrics:
    """Every metric of one collector process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = SignalTally(
            "repsys_collector_signals_received_total",
            "Signals decoded from sources.",
            registry,
        )
        self.written = SignalTally(
            "repsys_collector_signals_written_total",
            "Signals written to the signal streams.",
            registry,
        )
        self.dropped = SignalTally(
            "repsys_collector_signals_dropped_total",
            "Signals dropped because the buffer was full while Redis was away.",
            registry,
        )
        self.dead_letters = Counter(
            "repsys_collector_dead_letters_total",
            "Payloads that did not decode, put on the dead-letter stream.",
            ["reader", "reason"],
            registry=registry,
        )
        self.owned = Gauge(
            "repsys_collector_source_owned",
            "1 while this process reads the source (holds its lease, or Redis cannot say); "
            "0 on a standby.",
            ["reader", "source"],
            registry=registry,
        )
        self.connected = Gauge(
            "repsys_collector_source_connected",
            "1 while the source is connected and subscribed.",
            ["reader", "source"],
            registry=registry,
        )
        self.last_message = SourceActivity(registry)
        self.reconnects = Counter(
            "repsys_collector_reconnects_total",
            "Reconnections to a source after a failure.",
            ["reader", "source", "reason"],
            registry=registry,
        )
        self.items_refused = Counter(
            "repsys_collector_items_refused_total",
            "Items a source refused to monitor (OPC UA: a bad node id), by status code.",
            ["reader", "source", "status"],
            registry=registry,
        )
        self.udp_gaps = Counter(
            "repsys_collector_udp_gaps_total",
            "Losses a UDP payload shows (end_without_start, start_without_end, "
            "counter_skip); UDP itself never says what it lost.",
            ["source", "kind"],
            registry=registry,
        )
        self.sparkplug_events = Counter(
            "repsys_collector_sparkplug_events_total",
            "Sparkplug B session events: seq_gap, no_birth, rebirth_requested, "
            "stale_death, unsupported_type.",
            ["source", "kind"],
            registry=registry,
        )
        self.mtconnect_gaps = Counter(
            "repsys_collector_mtconnect_gaps_total",
            "Observations an MTConnect agent's buffer dropped before the reader read them "
            "(from < firstSequence), by source.",
            ["source"],
            registry=registry,
        )
        self.mtconnect_events = Counter(
            "repsys_collector_mtconnect_events_total",
            "MTConnect session events: resumed, resync, agent_restart, overrun.",
            ["source", "kind"],
            registry=registry,
        )
        self.watchdog = Counter(
            "repsys_collector_watchdog_actions_total",
            "Watchdog actions on quiet sources (resubscribe, reconnect).",
            ["source", "action"],
            registry=registry,
        )
        self.buffer = Gauge(
            "repsys_collector_buffer_signals",
            "Entries waiting to be written to Redis.",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "repsys_collector_xadd_batch_seconds",
            "Time to write one pipelined XADD batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.redis_errors = Counter(
            "repsys_collector_redis_errors_total",
            "Failed batch writes (the batch is kept and retried).",
            registry=registry,
        )
        self.trimmed = Counter(
            "repsys_collector_trimmed_entries_total",
            "Stream entries removed by trimming (never ones pending for the rules group).",
            registry=registry,
        )
        self.stream_length = Gauge(
            "repsys_collector_stream_entries",
            "Entries in each signal partition stream (watch it when rules lag).",
            ["partition"],
            registry=registry,
        )
