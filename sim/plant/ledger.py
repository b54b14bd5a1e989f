"""The ground-truth ledger: every fault the simulated plant injected, as JSON lines.

The plant (:class:`sim.plant.model.Plant`) appends one :class:`Injected` entry per fault
occurrence (a repeating fault gives one entry each time it happens). ``start_ts`` is when
the fault shows in the machine's signals: the machining event that carries a counter jump
or roll-back, the premature change, the stop of a machine, the start of a drift or of a
loop-out. ``end_ts`` is when it stops showing (the recovery, the drift's or loop-out's
end); an instantaneous fault ends where it starts. ``rules`` are the rule *types* that
must open an episode for it (:data:`sim.plant.scenario.EXPECTED_RULES`), so ``repsys soak``
can tell true, false, missed and duplicate tickets apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sim.plant.scenario import EXPECTED_RULES, OPTIONAL_RULES, Fault


@dataclass(slots=True)
class Injected:
    """One fault occurrence as the plant acted it out (times in simulated Unix seconds).

    Attributes:
        machine: the machine ("" for a transport fault of the whole plant).
        kind: the fault kind (:class:`sim.plant.scenario.FaultKind` value).
        subject: the tool (``T1``) for tool faults, the skipped pallet for a loop-out.
        injected_ts: when the scenario injected it.
        start_ts: when it first shows in the signals (None: it never did, e.g. the tool
            was not used again before the end).
        end_ts: when it stopped showing (None: still going at the end of the run).
        rules: the rule types that must open an episode for it.
        optional: rule types that may open one for it without being required to: a
            wear drift cut short by the tool's change may or may not have moved the
            cycle-time chart far enough (an episode of it is then no false positive, and
            none is no miss); an overload may be a drift as well
            (:data:`sim.plant.scenario.OPTIONAL_RULES`).
    """

    machine: str
    kind: str
    subject: str
    injected_ts: float
    start_ts: float | None
    end_ts: float | None
    rules: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @classmethod
    def of(cls, fault: Fault, ts: float, subject: str = "") -> Injected:
        """A new entry for ``fault`` injected at ``ts``; times set as the plant acts it out."""
        return cls(
            machine=fault.machine,
            kind=fault.kind.value,
            subject=subject or fault.tool,
            injected_ts=ts,
            start_ts=None,
            end_ts=None,
            rules=EXPECTED_RULES[fault.kind],
            optional=OPTIONAL_RULES.get(fault.kind, ()),
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rules"] = list(self.rules)
        data["optional"] = list(self.optional)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Injected:
        return cls(
            machine=str(data["machine"]),
            kind=str(data["kind"]),
            subject=str(data.get("subject", "")),
            injected_ts=float(data["injected_ts"]),
            start_ts=None if data.get("start_ts") is None else float(data["start_ts"]),
            end_ts=None if data.get("end_ts") is None else float(data["end_ts"]),
            rules=tuple(str(r) for r in data.get("rules", ())),
            optional=tuple(str(r) for r in data.get("optional", ())),
        )


def write_ledger(path: Path, entries: Iterable[Injected]) -> int:
    """Write ``entries`` as JSON lines; returns how many."""
    lines = [json.dumps(e.to_json(), sort_keys=True) + "\n" for e in entries]
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def read_ledger(path: Path) -> list[Injected]:
    """The entries of a ledger file written by :func:`write_ledger`."""
    text = path.read_text(encoding="utf-8")
    return [Injected.from_json(json.loads(line)) for line in text.splitlines() if line.strip()]
