"""Grouping and timing of ticket events per route (Alertmanager's aggregation groups), pure.

Each event is matched against the route tree; every matching node puts it into the group
of ``(node, group labels)``. A group sends:

- its first message ``group_wait_s`` after its first event (so a burst goes out as one);
- then, on a ``group_interval_s`` beat counted from its first send, the events that arrived
  since the last message, if any;
- on a beat with nothing new, the open tickets again when ``repeat_interval_s`` has passed
  since the last message (a reminder; ``repeat: true``).

A ``cleared`` event closes its ticket in the group; a group with no open ticket and nothing
to send is dropped. Inhibition (``notify.inhibit_rules``) is judged when a message is cut:
an event whose labels match a rule's ``target_matchers`` while an *open* ticket (of any
group) matches its ``source_matchers`` and shares the ``equal`` labels is dropped and
reported as inhibited, as Alertmanager mutes it. The clock is the caller's: a live
dispatcher passes the wall clock, a golden case a simulated one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.config.notify import InhibitRule
from rules.routing.tree import Labels, Matcher, Route


@dataclass(frozen=True)
class Notice:
    """One ticket event to route: ``key`` is unique per (ticket, event)."""

    key: str
    ticket: str
    event: str
    labels: Mapping[str, str]
    at: datetime


@dataclass(frozen=True)
class Delivery:
    """One message for one receiver: the group's new events, or a reminder of open tickets."""

    receiver: str
    route: str
    group: tuple[tuple[str, str], ...]
    at: datetime
    notices: tuple[Notice, ...]
    repeat: bool = False
    repeat_no: int = 0

    def item_keys(self) -> list[str]:
        """Exactly-once keys of what this message carries, one per (ticket, event)."""
        if self.repeat:
            return [f"{n.key}#repeat{self.repeat_no}" for n in self.notices]
        return [n.key for n in self.notices]


@dataclass
class Group:
    """One aggregation group's state (plain data, so a live dispatcher can store it)."""

    route: str
    receiver: str
    key: tuple[tuple[str, str], ...]
    created_at: datetime
    pending: list[Notice] = field(default_factory=list)
    open: dict[str, Notice] = field(default_factory=dict)
    next_flush_at: datetime | None = None
    last_sent_at: datetime | None = None
    repeats: int = 0


@dataclass(frozen=True)
class Inhibitor:
    """A parsed inhibit rule."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def from_config(cls, rule: InhibitRule) -> Inhibitor:
        return cls(
            tuple(Matcher.parse(m) for m in rule.source_matchers),
            tuple(Matcher.parse(m) for m in rule.target_matchers),
            tuple(rule.equal),
        )

    def mutes(self, ticket: str, target: Labels, sources: Mapping[str, Labels]) -> bool:
        """Whether an open ticket other than ``ticket`` mutes an event with ``target``."""
        if not all(m.matches(target) for m in self.target):
            return False
        for other, source in sources.items():
            if other == ticket:
                continue  # a ticket never inhibits itself
            if all(m.matches(source) for m in self.source) and all(
                source.get(k, "") == target.get(k, "") for k in self.equal
            ):
                return True
        return False


class Dispatcher:
    """Routes notices into groups and cuts deliveries when groups are due."""

    def __init__(self, tree: Route, inhibitors: list[Inhibitor] | None = None) -> None:
        self.tree = tree
        self.nodes = {node.id: node for node in tree.walk()}
        self.inhibitors = inhibitors or []
        self.groups: dict[tuple[str, tuple[tuple[str, str], ...]], Group] = {}
        #: Open tickets' latest labels, for inhibition (any group, any route).
        self.open_tickets: dict[str, Labels] = {}
        self.inhibited: list[tuple[datetime, Notice]] = []

    def receive(self, notice: Notice) -> None:
        """Put a notice into the group of every route it matches."""
        if notice.event == "cleared":
            self.open_tickets.pop(notice.ticket, None)
        else:
            self.open_tickets[notice.ticket] = notice.labels
        for node in self.tree.match(notice.labels):
            gkey = node.group_key(notice.labels)
            group = self.groups.get((node.id, gkey))
            if group is None:
                group = Group(node.id, node.receiver, gkey, notice.at)
                group.next_flush_at = notice.at + timedelta(seconds=node.group_wait_s)
                self.groups[(node.id, gkey)] = group
            group.pending.append(notice)
            if notice.event == "cleared":
                group.open.pop(notice.ticket, None)
            else:
                group.open[notice.ticket] = notice

    def next_due(self) -> datetime | None:
        """The earliest moment a group may send."""
        times = [g.next_flush_at for g in self.groups.values() if g.next_flush_at is not None]
        return min(times) if times else None

    def flush(self, now: datetime) -> list[Delivery]:
        """Every delivery due at ``now`` (call at or after :meth:`next_due`)."""
        out: list[Delivery] = []
        for gid, group in sorted(self.groups.items(), key=lambda kv: (kv[1].created_at, kv[0])):
            while group.next_flush_at is not None and group.next_flush_at <= now:
                delivery = self._flush_group(group, group.next_flush_at)
                if delivery is not None:
                    out.append(delivery)
                if not group.open and not group.pending:
                    group.next_flush_at = None
                    break
            if group.next_flush_at is None:
                del self.groups[gid]
        out.sort(key=lambda d: (d.at, d.receiver, d.route, d.group))
        return out

    def _flush_group(self, group: Group, at: datetime) -> Delivery | None:
        node = self.nodes[group.route]
        group.next_flush_at = at + timedelta(seconds=node.group_interval_s)
        sources = self.open_tickets
        fresh: list[Notice] = []
        for notice in group.pending:
            if notice.event != "cleared" and any(
                rule.mutes(notice.ticket, notice.labels, sources) for rule in self.inhibitors
            ):
                self.inhibited.append((at, notice))
            else:
                fresh.append(notice)
        group.pending = []
        if fresh:
            group.last_sent_at = at
            return Delivery(group.receiver, group.route, group.key, at, tuple(fresh))
        due = group.last_sent_at is None or (at - group.last_sent_at).total_seconds() >= (
            node.repeat_interval_s
        )
        if group.open and group.last_sent_at is not None and due:
            reminders = tuple(
                n
                for n in group.open.values()
                if not any(rule.mutes(n.ticket, n.labels, sources) for rule in self.inhibitors)
            )
            if reminders:
                group.repeats += 1
                group.last_sent_at = at
                return Delivery(
                    group.receiver,
                    group.route,
                    group.key,
                    at,
                    reminders,
                    repeat=True,
                    repeat_no=group.repeats,
                )
        return None


def simulate(
    dispatcher: Dispatcher,
    notices: list[Notice],
    until: datetime,
    *,
    reload: Callable[[Dispatcher], Dispatcher] | None = None,
) -> list[Delivery]:
    """Feed ``notices`` in time order on a simulated clock; every delivery up to ``until``.

    Groups due before an event's time send first; an event at a group's due time is in
    that message. ``reload`` (a checkpoint round trip) is applied after every step.
    """
    out: list[Delivery] = []
    again = reload or (lambda d: d)

    def run_to(t: datetime, *, inclusive: bool) -> None:
        nonlocal dispatcher
        while (due := dispatcher.next_due()) is not None and (due <= t if inclusive else due < t):
            out.extend(dispatcher.flush(due))
            dispatcher = again(dispatcher)

    for notice in sorted(notices, key=lambda n: n.at):
        run_to(notice.at, inclusive=False)
        dispatcher.receive(notice)
        dispatcher = again(dispatcher)
    run_to(until, inclusive=True)
    return out


def _notice_out(n: Notice) -> dict[str, object]:
    return {"k": n.key, "t": n.ticket, "e": n.event, "l": dict(n.labels), "at": n.at.isoformat()}


def _notice_in(d: Mapping[str, object]) -> Notice:
    labels = d["l"]
    assert isinstance(labels, dict)
    return Notice(
        str(d["k"]), str(d["t"]), str(d["e"]), labels, datetime.fromisoformat(str(d["at"]))
    )


def _time_out(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _time_in(t: object) -> datetime | None:
    return None if t is None else datetime.fromisoformat(str(t))


def dump(dispatcher: Dispatcher) -> dict[str, object]:
    """The dispatcher's state as JSON-ready data (a live dispatcher's checkpoint)."""
    return {
        "v": 1,
        "open": {t: dict(labels) for t, labels in dispatcher.open_tickets.items()},
        "groups": [
            {
                "route": g.route,
                "receiver": g.receiver,
                "key": [list(kv) for kv in g.key],
                "created_at": g.created_at.isoformat(),
                "pending": [_notice_out(n) for n in g.pending],
                "open": [_notice_out(n) for n in g.open.values()],
                "next_flush_at": _time_out(g.next_flush_at),
                "last_sent_at": _time_out(g.last_sent_at),
                "repeats": g.repeats,
            }
            for g in dispatcher.groups.values()
        ],
    }


def load(dispatcher: Dispatcher, data: Mapping[str, object]) -> None:
    """Restore :func:`dump`'s state; groups of routes no longer configured are dropped."""
    if data.get("v") != 1:
        return
    open_tickets = data.get("open", {})
    assert isinstance(open_tickets, dict)
    dispatcher.open_tickets = {str(t): dict(v) for t, v in open_tickets.items()}
    groups = data.get("groups", [])
    assert isinstance(groups, list)
    for g in groups:
        if g["route"] not in dispatcher.nodes:
            continue
        node = dispatcher.nodes[g["route"]]
        key = tuple((str(k), str(v)) for k, v in g["key"])
        opened = [_notice_in(n) for n in g["open"]]
        group = Group(
            route=node.id,
            receiver=node.receiver,
            key=key,
            created_at=datetime.fromisoformat(g["created_at"]),
            pending=[_notice_in(n) for n in g["pending"]],
            open={n.ticket: n for n in opened},
            next_flush_at=_time_in(g["next_flush_at"]),
            last_sent_at=_time_in(g["last_sent_at"]),
            repeats=int(g["repeats"]),
        )
        dispatcher.groups[(node.id, key)] = group
