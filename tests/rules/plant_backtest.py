"""A backtest of the plants' rules against the plain reference (docs/decisions/0240).

``python -m tests.rules.plant_backtest DIR`` writes ``DIR/signals.jsonl`` (machining
events of 20 machines over a day: one- and two-pallet, 2 to 4 tools each with its own
start and end in the cut, increments 1 and 2, the plants' lives, injected jumps, skips,
counters going back, early changes, short pallet repeats and loop-outs),
``DIR/config.yaml`` (the four rules, one episode per flag) and ``DIR/expected.json`` (the
reference's episodes, after the accepted readings of ``test_plant_reference``). Then::

    repsys -c DIR/config.yaml rules backtest --file DIR/signals.jsonl --json > DIR/got.jsonl
    python -m tests.rules.plant_backtest DIR --compare DIR/got.jsonl

prints per rule the reference's episodes, the engine's, and how many match.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.rules.plant_reference import Event, Tool, evaluate
from tests.rules.test_plant_reference import PLANT_RULES, SHIFT_0, SHIFTS, ZONE, expected_episodes

LIVES = [198, 348, 798, 1798, 2498]


def _tools(rng: random.Random, pallets: int) -> dict[str, Tool]:
    tools = {}
    for k in range(1, rng.randint(2, 4) + 1):
        shared = pallets if (pallets == 1 or rng.random() < 0.8) else 1
        tools[f"T{k}"] = Tool(f"T{k}", rng.choice(LIVES), rng.choice([1, 1, 2]), shared)
    return tools


def _events(
    rng: random.Random, tools: dict[str, Tool], pallets: int, injected: Counter[str]
) -> list[Event]:
    counters = {n: rng.randrange(0, t.life // t.increment) * t.increment for n, t in tools.items()}
    cut_s, share = rng.randint(60, 240), rng.choice([0.3, 0.5, 0.8])
    t = SHIFT_0 - 3600 + rng.randint(0, 600)
    end_at = t + 24 * 3600
    pallet, run_left = "1", 1
    events: list[Event] = []
    while t < end_at:
        t += rng.randint(5, 20) + (rng.choice([600, 3600]) if rng.random() < 0.01 else 0)
        length = cut_s + rng.randint(0, 15)
        slot = length // len(tools)
        for n, tool in enumerate(x for x in tools.values() if x.pallets > 1 or pallet == "1"):
            inc, c, r = tool.increment, counters[tool.name], rng.random()
            if c >= tool.life:
                c = rng.choice([0, inc, 2 * inc])  # changed at its life
            elif r < 0.004:
                c += inc * rng.randint(30, 400)
                injected["jump"] += 1
            elif r < 0.008:
                c += inc * rng.randint(2, 4)
                injected["skip"] += 1
            elif r < 0.011:
                c = max(0, c - inc * rng.randint(1, 5))
                injected["back"] += 1
            elif r < 0.013:
                c = rng.choice([0, inc, 2 * inc])
                injected["early_change"] += 1
            else:
                c += inc
            counters[tool.name] = c
            start = t + n * slot
            events.append(Event(tool.name, pallet, c, start, start + max(1, int(slot * share))))
        t += length
        run_left -= 1
        if pallets > 1 and run_left <= 0:
            pallet = "2" if pallet == "1" else "1"
            r = rng.random()
            if r < 0.02:
                run_left = rng.randint(2, 4)
                injected["short_repeat"] += 1
            elif r < 0.03:
                run_left = rng.randint(5, 8)
                injected["loop_out"] += 1
            else:
                run_left = 1
    return events


def generate(out: Path, seed: int = 24) -> None:
    rng = random.Random(seed)
    machines: list[dict[str, Any]] = []
    specs: dict[str, Any] = {}
    signals: list[dict[str, Any]] = []
    expected: list[list[str]] = []
    injected: Counter[str] = Counter()
    for n in range(20):
        mid, pallets = f"m{n:02d}", 2 if n % 4 else 1
        tools = _tools(rng, pallets)
        machines.append(
            {"id": mid, "pcn": 123681, "workcenter_key": 60000 + n, "workcenter_code": mid}
        )
        specs[mid] = {
            "cycle_source": "machining_event",
            "tools": {
                t.name: {"life": t.life, "increment": t.increment, "pallets": t.pallets}
                for t in tools.values()
            },
        }
        events = _events(rng, tools, pallets, injected)
        flags = evaluate(events, tools, ZONE, SHIFTS)
        expected += [[mid, *e] for e in expected_episodes(flags)]
        signals += [
            {"machine": mid, "name": "machining_event", "value": e.counter, "ts": e.end,
             "subject": e.tool, "attrs": {"pallet": e.pallet, "tool": e.tool,
                                          "counter": str(e.counter), "start": str(e.start)}}
            for e in events
        ]  # fmt: skip
    signals.sort(key=lambda s: int(s["ts"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "signals.jsonl").write_text("".join(json.dumps(s) + "\n" for s in signals))
    rules = [{"name": r, "type": r, "keep_firing_for_s": 0} for r in PLANT_RULES]
    cfg = {
        "machines": machines,
        "plant": {"timezone": ZONE},
        "rules": {"shifts": SHIFTS, "group_wait_s": 0, "machines": specs, "rules": rules},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    (out / "expected.json").write_text(json.dumps(expected))
    total = sum(injected.values())
    print(f"{len(signals)} events, {total} injected anomalies: {dict(sorted(injected.items()))}")


def compare(out: Path, got_path: Path) -> None:
    expected = Counter(tuple(e) for e in json.loads((out / "expected.json").read_text()))
    got: Counter[tuple[str, ...]] = Counter()
    for line in got_path.read_text().splitlines():
        r = json.loads(line)
        got[r["machine"], r["rule"], r["subject"], r["started_at"]] += 1
    print(f"{'rule':<20}{'reference':>10}{'engine':>8}{'matched':>9}{'missed':>8}{'extra':>7}")
    for rule in PLANT_RULES:
        e = Counter({k: v for k, v in expected.items() if k[1] == rule})
        g = Counter({k: v for k, v in got.items() if k[1] == rule})
        print(
            f"{rule:<20}{e.total():>10}{g.total():>8}{(e & g).total():>9}"
            f"{(e - g).total():>8}{(g - e).total():>7}"
        )
    jumps = {(k[0], k[3]) for k in expected if k[1] == "counter_jump"}
    as_rollbacks = jumps & {(k[0], k[3]) for k in got if k[1] == "counter_rollback"}
    print(f"reference jumps the engine filed as roll-backs: {len(as_rollbacks)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--compare", type=Path, help="the backtest's --json output")
    args = parser.parse_args()
    if args.compare:
        compare(args.dir, args.compare)
    else:
        generate(args.dir)


if __name__ == "__main__":
    main()
