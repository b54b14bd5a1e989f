"""Matching the episodes the rules opened against the plant's ground truth.

Each episode (one problem, whatever ticket it shares through grouping) is matched with the
fault of the ledger (``sim/plant/ledger.py``) on the same machine whose expected rule types
include the episode's type, whose subject is the episode's (for the tool and pallet
faults), and during which the episode started: from the injection to ``grace_s`` after the
fault stopped showing. The first episode per fault and rule is a **true positive**, each
further one a **duplicate**; an episode no fault explains is a **false positive**; a fault
and expected rule with no episode is **missed**. Detection latency is the engine time at
which the ticket was written minus the moment the fault first showed in the signals.

Faults that never showed in the signals (a tool not used again before the end) and the
transport faults (no machine signal changes; no rule is expected of them) are listed
apart, neither matched nor missed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rules.alerts import utc_iso
from sim.plant.ledger import Injected

#: Fault kinds whose subject (the tool, the skipped pallet, the alarm code) the episode
#: must name.
SUBJECT_KINDS = frozenset(
    {
        "premature_tool_change",
        "counter_jump",
        "counter_rollback",
        "pallet_looped_out",
        "tool_not_changed",
        "alarm_burst",
    }
)


@dataclass(frozen=True, slots=True)
class Episode:
    """An episode the rules opened: what and when (simulated Unix seconds)."""

    machine: str
    rule: str  # the rule's type
    subject: str
    started: float
    ticket_at: float  # engine time its ticket was written
    ticket_ref: str
    summary: str


@dataclass
class Outcome:
    """The soak's verdict: each list holds JSON-ready rows with machine, rule and time."""

    true_positives: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    missed: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    not_shown: list[dict[str, Any]] = field(default_factory=list)
    not_observable: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No false, missed or duplicate episode."""
        return not (self.false_positives or self.missed or self.duplicates)


def _episode_row(ep: Episode) -> dict[str, Any]:
    return {
        "machine": ep.machine,
        "rule": ep.rule,
        "subject": ep.subject,
        "time": utc_iso(ep.started),
        "ticket_at": utc_iso(ep.ticket_at),
        "summary": ep.summary,
    }


def _fault_row(f: Injected, rule: str = "") -> dict[str, Any]:
    return {
        "machine": f.machine,
        "kind": f.kind,
        "rule": rule,
        "subject": f.subject,
        "time": utc_iso(f.start_ts if f.start_ts is not None else f.injected_ts),
    }


#: Seconds an episode may seem to start before its fault was injected: the instant passes
#: through formats of coarser resolution on its way (the tool tracker's times are whole
#: seconds, as the plants' gateways send them: 06.867 comes back as 06.000; OPC UA's
#: DateTime as a Python datetime keeps microseconds, 0.3727682 s comes back as 0.372768;
#: decision 0460).
RESOLUTION_S = 1.0


def _explains(f: Injected, ep: Episode, end_ts: float, grace_s: float) -> bool:
    if f.machine != ep.machine or f.start_ts is None:
        return False
    if ep.rule not in f.rules and ep.rule not in f.optional:
        return False
    if f.kind in SUBJECT_KINDS and ep.subject != f.subject:
        return False
    end = f.end_ts if f.end_ts is not None else end_ts
    return f.injected_ts - RESOLUTION_S <= ep.started <= end + grace_s


def match(
    ledger: list[Injected], episodes: list[Episode], *, end_ts: float, grace_s: float
) -> Outcome:
    """Sort every episode and every expected (fault, rule) into the outcome's lists.

    Args:
        ledger: the plant's ground truth.
        episodes: what the rules opened, in any order.
        end_ts: the end of the run (a fault still going ends there).
        grace_s: how long after a fault stopped showing an episode may still start.
    """
    out = Outcome()
    expected = [f for f in ledger if (f.rules or f.optional) and f.start_ts is not None]
    out.not_shown = [_fault_row(f) for f in ledger if f.rules and f.start_ts is None]
    out.not_observable = [_fault_row(f) for f in ledger if not f.rules]
    hit: set[tuple[int, str]] = set()
    for ep in sorted(episodes, key=lambda e: (e.started, e.machine, e.rule, e.subject)):
        fits = [i for i, f in enumerate(expected) if _explains(f, ep, end_ts, grace_s)]
        if not fits:
            out.false_positives.append(_episode_row(ep))
            continue
        # The earliest fault not yet detected by this rule; else a duplicate of the latest.
        fresh = [i for i in fits if (i, ep.rule) not in hit]
        if not fresh:
            row = _episode_row(ep) | {"fault": _fault_row(expected[fits[-1]], ep.rule)}
            out.duplicates.append(row)
            continue
        i = fresh[0]
        hit.add((i, ep.rule))
        f = expected[i]
        assert f.start_ts is not None  # expected faults showed
        latency = round(max(0.0, ep.ticket_at - f.start_ts), 3)
        out.true_positives.append(
            _episode_row(ep) | {"kind": f.kind, "latency_s": latency, "fault": _fault_row(f)}
        )
    for i, f in enumerate(expected):
        out.missed.extend(_fault_row(f, rule) for rule in f.rules if (i, rule) not in hit)
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def latency_by_kind(out: Outcome) -> dict[str, dict[str, float]]:
    """Per fault kind: detections, p50 and p99 of the latency in seconds."""
    per: dict[str, list[float]] = {}
    for row in out.true_positives:
        per.setdefault(row["kind"], []).append(float(row["latency_s"]))
    return {
        kind: {"n": len(v), "p50_s": percentile(v, 50), "p99_s": percentile(v, 99)}
        for kind, v in sorted(per.items())
    }
