"""``repsys rules routes``: print the route tree, test labels against it, run golden cases.

``--test machine=cnc103 rule=tool_life_short level=2`` prints the receivers such an event
reaches, one a line (as ``amtool config routes test`` does). A machine's ``cell``,
``building`` and ``workcenter`` and a rule's ``rule_type``, ``category`` and ``severity``
are filled from the configuration unless given. Exit 0; 1 when a golden case differs;
2 on bad labels or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, config_from_args
from core.config import RepsysConfig
from core.config.notify import ROUTE_LABELS
from rules.routing.golden import case_folders, run_case
from rules.routing.tree import Route, build_tree, receivers


def labels_from_args(cfg: RepsysConfig, pairs: list[str]) -> dict[str, str]:
    """``['machine=cnc103', ...]`` with the configured facts of that machine and rule.

    Raises:
        ValueError: a pair is not ``label=value`` or names an unknown label.
    """
    labels: dict[str, str] = {}
    for pair in pairs:
        label, sep, value = pair.partition("=")
        if not sep or label not in ROUTE_LABELS:
            raise ValueError(f"{pair!r}: want label=value, label one of {', '.join(ROUTE_LABELS)}")
        labels[label] = value
    given = dict(labels)
    machine = cfg.machine(labels.get("machine", ""))
    if machine is not None:
        labels.setdefault("cell", machine.cell)
        labels.setdefault("building", machine.building)
        labels.setdefault("workcenter", machine.workcenter_code)
    rule = next((r for r in cfg.rules.rules if r.name == labels.get("rule")), None)
    if rule is not None:
        labels.setdefault("rule_type", rule.type)
        labels.setdefault("severity", str(rule.severity))
        if rule.category:
            labels.setdefault("category", rule.category)
    if "level" in given and "event" not in given:
        labels["event"] = "escalated"  # a level asked for is an escalation
    return labels


def _print_tree(node: Route, depth: int = 0) -> None:
    matchers = ", ".join(str(m) for m in node.matchers) or "(all)"
    cont = " continue" if node.continue_ else ""
    group = "..." if node.group_all else ",".join(node.group_by)
    print(
        f"{'  ' * depth}{matchers} -> {node.receiver} [group_by {group}; wait "
        f"{node.group_wait_s:g}s, interval {node.group_interval_s:g}s, repeat "
        f"{node.repeat_interval_s:g}s{cont}]"
    )
    for child in node.routes:
        _print_tree(child, depth + 1)


def routes(args: argparse.Namespace) -> int:
    """The ``repsys rules routes`` command."""
    if args.cases:
        failed = 0
        for folder in case_folders(Path(args.cases)):
            actual, expected = run_case(folder)
            ok = actual == expected
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {folder.name}")
            if not ok:
                for line in actual:
                    print("     " + json.dumps(line))
        return EXIT_FAILURE if failed else EXIT_OK
    cfg = config_from_args(args)
    tree = build_tree(cfg.notify)
    if args.test is None:
        _print_tree(tree)
        return EXIT_OK
    try:
        labels = labels_from_args(cfg, args.test)
    except ValueError as exc:
        print(f"repsys: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.verbose:
        print("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    for name in receivers(tree, labels):
        print(name)
    return EXIT_OK
