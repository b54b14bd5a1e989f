"""The route tree: which receivers a ticket event reaches (Alertmanager's ``dispatch/route.go``).

A node matches an event when all its matchers hold on the event's labels. Matching is
depth first: the children are tried in order, and the first child that matches takes the
event unless it has ``continue: true``, in which case the next siblings are tried too. A
node none of whose children match is itself the match. ``receiver``, ``group_by`` and the
three intervals are inherited from the parent when a node does not set them; the root
takes ``notify.defaults``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.config.notify import NotifyConfig, RouteConfig, parse_matcher

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Matcher:
    """``label OP value``; a missing label is the empty string, as in Alertmanager."""

    label: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        label, op, value = parse_matcher(text)
        # Alertmanager anchors regular expressions: "high|medium" must match all of the value.
        pattern = re.compile(f"^(?:{value})$") if op in ("=~", "!~") else None
        return cls(label, op, value, pattern)

    def matches(self, labels: Labels) -> bool:
        got = labels.get(self.label, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self.pattern is not None
        hit = self.pattern.match(got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


@dataclass(frozen=True)
class Route:
    """A node of the tree with every inherited setting resolved."""

    id: str
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_all: bool
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    continue_: bool
    routes: tuple[Route, ...] = field(default=())

    def matches_self(self, labels: Labels) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def match(self, labels: Labels) -> list[Route]:
        """The nodes that take an event with these labels (empty when this one does not)."""
        if not self.matches_self(labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            got = child.match(labels)
            found += got
            if got and not child.continue_:
                break
        return found or [self]

    def group_key(self, labels: Labels) -> tuple[tuple[str, str], ...]:
        """The labels that split this node's events into groups."""
        if self.group_all:
            return tuple(sorted(labels.items()))
        return tuple((k, labels.get(k, "")) for k in self.group_by)

    def walk(self) -> list[Route]:
        """This node and every node below it, depth first."""
        out = [self]
        for child in self.routes:
            out += child.walk()
        return out


def _build(cfg: RouteConfig, parent: Route | None, node_id: str) -> Route:
    assert parent is not None
    group_by = parent.group_by if cfg.group_by is None else tuple(cfg.group_by)
    group_all = parent.group_all if cfg.group_by is None else "..." in cfg.group_by
    node = Route(
        id=node_id,
        receiver=cfg.receiver or parent.receiver,
        matchers=tuple(Matcher.parse(m) for m in cfg.matchers),
        group_by=tuple(g for g in group_by if g != "..."),
        group_all=group_all,
        group_wait_s=parent.group_wait_s if cfg.group_wait_s is None else cfg.group_wait_s,
        group_interval_s=(
            parent.group_interval_s if cfg.group_interval_s is None else cfg.group_interval_s
        ),
        repeat_interval_s=(
            parent.repeat_interval_s if cfg.repeat_interval_s is None else cfg.repeat_interval_s
        ),
        continue_=cfg.continue_,
    )
    children = tuple(_build(c, node, f"{node_id}/{i}") for i, c in enumerate(cfg.routes))
    return Route(**{**node.__dict__, "routes": children})


def build_tree(cfg: NotifyConfig) -> Route:
    """The resolved tree of ``notify.route`` (validated config: the root has a receiver).

    With ``notify.admin_receiver`` set, a first child ``event=ops`` routes RepSys's own
    alerts there (node ``root/0``; the configured children follow).
    """
    d = cfg.defaults
    top = Route(
        id="",
        receiver=cfg.route.receiver or "",
        matchers=(),
        group_by=tuple(d.group_by),
        group_all="..." in d.group_by,
        group_wait_s=d.group_wait_s,
        group_interval_s=d.group_interval_s,
        repeat_interval_s=d.repeat_interval_s,
        continue_=False,
    )
    route = cfg.route
    if cfg.admin_receiver is not None:
        # RepSys's own operations alerts go to the admin receiver first, and only there.
        ops = RouteConfig(receiver=cfg.admin_receiver, matchers=["event=ops"], group_wait_s=0)
        route = route.model_copy(update={"routes": [ops, *route.routes]})
    return _build(route, top, "root")


def receivers(tree: Route, labels: Labels) -> list[str]:
    """Receiver names an event reaches, in match order, each once."""
    out: list[str] = []
    for node in tree.match(labels):
        if node.receiver not in out:
            out.append(node.receiver)
    return out
