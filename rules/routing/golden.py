"""Golden cases of routing: ticket events over simulated time → deliveries per receiver.

A case folder holds ``config.yaml`` (a ``notify:`` section, with ``until_s``: how long the
simulated clock runs), ``input.jsonl`` (one event a line: ``t`` seconds from the start,
``ticket``, ``event``, ``labels``; ``#`` lines are comments) and ``expected.jsonl`` (one
line per message: ``t``, ``receiver``, ``group``, ``events`` as ``ticket:event``,
``repeat``; and one line per inhibited event: ``t``, ``inhibited``). ``run_case`` returns
the actual lines; the comparison is exact and ordered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from core.config.notify import NotifyConfig
from rules.routing.dispatch import Dispatcher, Inhibitor, Notice, dump, load, simulate
from rules.routing.tree import build_tree

#: Simulated time zero of every case.
EPOCH = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append(json.loads(line))
    return out


def _offset(at: datetime) -> float:
    return (at - EPOCH).total_seconds()


def run_case(
    folder: Path, *, checkpoint: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(actual, expected)`` lines of one case folder.

    ``checkpoint``: after every step the dispatcher is dumped to JSON text and rebuilt
    from it, as the live dispatcher is between passes; the deliveries must not change.
    """
    raw = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    until_s = float(raw.pop("until_s", 86400))
    cfg = NotifyConfig.model_validate(raw.get("notify", {}))
    dispatcher = Dispatcher(build_tree(cfg), [Inhibitor.from_config(r) for r in cfg.inhibit_rules])
    notices = []
    for row in _lines(folder / "input.jsonl"):
        ticket = str(row["ticket"])
        event = str(row["event"])
        labels = {k: str(v) for k, v in row.get("labels", {}).items()}
        labels.setdefault("event", event)
        notices.append(
            Notice(
                key=f"{ticket}:{event}:{row.get('n', 0)}",
                ticket=ticket,
                event=event,
                labels=labels,
                at=EPOCH + timedelta(seconds=float(row["t"])),
            )
        )
    inhibited: list[tuple[datetime, Notice]] = []

    def round_trip(old: Dispatcher) -> Dispatcher:
        inhibited.extend(old.inhibited)
        new = Dispatcher(old.tree, old.inhibitors)
        load(new, json.loads(json.dumps(dump(old))))
        return new

    end = EPOCH + timedelta(seconds=until_s)
    if checkpoint:
        deliveries = simulate(dispatcher, notices, end, reload=round_trip)
    else:
        deliveries = simulate(dispatcher, notices, end)
        inhibited = dispatcher.inhibited
    actual: list[dict[str, Any]] = [
        {
            "t": _offset(d.at),
            "receiver": d.receiver,
            "group": dict(d.group),
            "events": [f"{n.ticket}:{n.event}" for n in d.notices],
            "repeat": d.repeat,
        }
        for d in deliveries
    ]
    actual += [{"t": _offset(at), "inhibited": f"{n.ticket}:{n.event}"} for at, n in inhibited]
    actual.sort(key=lambda r: (r["t"], "inhibited" in r, r.get("receiver", "")))
    return actual, _lines(folder / "expected.jsonl")


def case_folders(root: Path) -> list[Path]:
    """``root`` itself when it is a case, else its case subfolders."""
    if (root / "input.jsonl").exists():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "input.jsonl").exists())
